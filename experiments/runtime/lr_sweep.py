"""Learning-rate sweeps of optimizers: a (lowest, highest) range per optimizer, ``NAME=LO:HI``
overrides from the command line, the rates spaced evenly in log over a range, their checks."""

from __future__ import annotations

import numpy as np

from experiments.runtime import options
from experiments.runtime.cli import ConfigError

# (lowest, highest) learning rate per optimizer, each wide enough that the best rate lies inside
# (found with a 13-point grid from 1e-4 to 1e2, 30 epochs, constant rate, seed 0).
DEFAULT_LR_RANGES = {
    "sgd": (0.1, 10.0),
    "momentum": (0.01, 1.0),
    "nesterov": (0.01, 1.0),
    "adam": (3e-4, 3e-2),
    "adamw": (3e-4, 3e-2),
    "rmsprop": (3e-4, 3e-2),
    "adagrad": (0.03, 3.0),
}
FALLBACK_LR_RANGE = (1e-4, 1e-1)  # for optimizers not listed above


def parse_ranges(items, names) -> dict[str, tuple[float, float]]:
    """``DEFAULT_LR_RANGES`` with the ``--lr-ranges`` items ``NAME=LO:HI`` (NAME in ``names``)
    in place of the defaults."""
    ranges = dict(DEFAULT_LR_RANGES)
    for item in items:
        name, eq, span = item.partition("=")
        try:
            low, high = (float(v) for v in span.split(":"))
        except ValueError:
            raise ConfigError(f"--lr-ranges expects NAME=LO:HI, got {item!r}") from None
        if not eq or name not in names:
            raise ConfigError(f"--lr-ranges {item!r}: {name!r} is not among --optimizers")
        for value in (low, high):
            options.positive_rate("lr_ranges", value)
        if low > high:
            raise ConfigError(f"--lr-ranges {item!r}: LO must be <= HI")
        ranges[name] = (low, high)
    return ranges


def log_grid(low: float, high: float, n: int) -> tuple[float, ...]:
    """``n`` rates evenly spaced in log from ``low`` to ``high`` (4 significant digits); one
    rate is the geometric mean."""
    if n == 1:
        return (float(np.sqrt(low * high)),)
    return tuple(float(f"{v:.4g}") for v in np.geomspace(low, high, n))


def optimizer_kwargs(per_optimizer_args, name: str) -> dict:
    """The options of optimizer ``name`` among ``NAME:KEY=VALUE`` items."""
    own = [rest for opt, _, rest in (a.partition(":") for a in per_optimizer_args) if opt == name]
    return options.parse_kwargs(own, "per_optimizer_args")


def check_optimizers(cfg) -> None:
    """ConfigError unless every ``cfg.per_optimizer_args`` item names one of ``cfg.optimizers``
    and every optimizer passes ``check_optimizer`` with its grid (``cfg.lr_grid(name)``)."""
    for item in cfg.per_optimizer_args:
        if item.partition(":")[0] not in cfg.optimizers:
            raise ConfigError(
                f"--per-optimizer-args {item!r}: expects NAME:KEY=VALUE with NAME "
                "among --optimizers"
            )
    for name in cfg.optimizers:
        check_optimizer(
            name,
            cfg.lr_grid(name),
            schedule=cfg.schedule,
            l2=cfg.weight_decay,
            kwargs=cfg.optimizer_kwargs(name),
        )


def check_optimizer(name: str, grid, *, schedule: str, l2: float, kwargs: dict) -> None:
    """ConfigError unless ``name`` is a known optimizer taking ``kwargs`` and its learning rates
    ``grid`` are distinct."""
    from bpjax import optimizers

    try:
        optimizers.optimizer_factory(name)
    except ValueError as e:
        raise ConfigError(f"--optimizers: {e}") from None
    if len(set(grid)) != len(grid):
        raise ConfigError(f"{name}'s learning rates repeat: {grid} (--lrs/--lr-ranges)")
    try:
        optimizers.make_sweep_optimizer(name, schedule=schedule, total_steps=1, l2=l2, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--per-optimizer-args: {e}") from None


def keep_results_and_fail(ctx, results: dict, summary: str, message: str, status: int) -> None:
    """Write ``results`` (and the plots) as a finished run would, print ``summary``, then raise
    RunFailed(``message``, ``status``): a failed sweep's numbers are still worth keeping."""
    from experiments.runtime import rundir
    from experiments.runtime.session import RunFailed, replot

    rundir.atomic_write_json(
        ctx.dir / rundir.RESULTS, {"experiment": ctx.exp.name, **results, "timing_s": ctx.timing}
    )
    replot(ctx.exp, ctx.dir)
    print(summary)
    raise RunFailed(message, status)


def init_sweep(name: str, grid, seeds, init_fn, *, schedule, total_steps, l2, kwargs):
    """Optimizer ``name`` over every (rate in ``grid``) x (seed in ``seeds``) run: its sweep
    transformation, the runs' rates and seeds (R,), their initial params and optimizer state."""
    from bpjax import optimizers, sweep

    tx = optimizers.make_sweep_optimizer(
        name, schedule=schedule, total_steps=total_steps, l2=l2, **kwargs
    )
    lrs, run_seeds = sweep.run_grid(grid, seeds)
    params, opt_state = sweep.init_runs(tx, init_fn, sweep.seed_keys(run_seeds), lrs)
    return tx, lrs, run_seeds, params, opt_state


def order_keys(data_seed: int, seeds, per_run: bool):
    """The mini-batch order key: one for every run, or with ``per_run`` one per run's seed."""
    import jax
    import jax.numpy as jnp

    base = jax.random.key(data_seed)
    if not per_run:
        return base
    return jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.asarray(seeds, jnp.uint32))


def replicate(tree, mesh):
    """``tree``'s arrays whole on every device of ``mesh`` (a sweep's data, for ``shard_runs``)."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    return jax.device_put(tree, NamedSharding(mesh, P()))
