"""How well a mini-batch's gradient approximates the full gradient, at several points of training.

    python -m experiments.minibatch_noise                  # real MNIST, the shared recipe
    python -m experiments.minibatch_noise --quick          # seconds, the embedded digits
    python -m experiments.minibatch_noise --epochs 10 --lr 3 --schedule constant \\
        --weight-decay 0 --method backprop --measure-at 0,1   # docs/seeing_backprop.md's run

The network (the shared model options) is trained with the shared recipe (``--optimizer``,
``--lr``, ``--schedule``, ``--batch-size``, ``--weight-decay``) for ``--epochs``; after each
epoch count in ``--measure-at`` and after the last, the experiment computes over all N training
examples:

- the full gradient g and the spread of the per-example gradients, sigma^2 = (1/N) sum_i
  ||g_i - g||^2, from per-example gradients (vmap) ``--chunk-size`` at a time inside one
  compiled pass (``bpjax.gradient_noise.gradient_moments``);
- for each mini-batch size B in ``--measure-batch-sizes`` (default 1, 3, 10, 30, ... below N,
  and N), ``--draws`` mini-batches drawn as SGD draws them (without replacement, at most 4N
  examples a size), and for each the cosine of its gradient g_B to g and ``||g_B - g|| / ||g||``;
- the prediction E||g_B - g||^2 = (sigma^2 / B) (N - B) / (N - 1).

The noise scale sigma^2 / ||g||^2 is the batch size at which the error is as large as g; when
||g|| is 0 or not finite it and the predicted ratios are reported as inf/nan, not an error.
Writes ``results.json`` and from it ``noise_vs_batch_size.png``
(``experiments/plots/minibatch_noise.py``). Training checkpoints at every measurement and every
``--checkpoint-every`` epochs; ``--resume RUN_DIR`` continues bit-identically. The measured
numbers are in ``docs/seeing_backprop.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import runtime
from experiments.plots import minibatch_noise as plots
from experiments.runtime import evaluation, options
from experiments.runtime.cli import ConfigError, flag
from experiments.runtime.rundir import to_jsonable


@dataclasses.dataclass(frozen=True)
class Config(
    runtime.DataOptions,
    runtime.ModelOptions,
    runtime.OptimizerOptions,
    runtime.TrainingOptions,
    runtime.RunOptions,
):
    measure_at: tuple[int, ...] = flag(
        (0, 1, 10),
        "measure after these epochs of training as well as after the last",
        metavar="EPOCH,...",
    )
    measure_batch_sizes: tuple[int, ...] = flag(
        (),
        "mini-batch sizes to measure; empty: 1, 3, 10, 30, ... below N, and N "
        "(--quick: 1, 10, 100, ...)",
        metavar="B,...",
    )
    draws: int = flag(32, "mini-batches drawn per size")
    chunk_size: int = flag(100, "per-example gradients held at once for the variance pass")

    def check(self) -> None:
        super().check()
        for epoch in self.measure_at:
            if not 0 <= epoch <= self.epochs:
                raise ConfigError(
                    f"--measure-at epochs must be in [0, --epochs {self.epochs}], got {epoch}"
                )
        for b in self.measure_batch_sizes:
            options.at_least("measure_batch_sizes", b)
        options.at_least("draws", self.draws, 2)
        options.at_least("chunk_size", self.chunk_size)

    def check_data(self, ds) -> None:
        """Called by the runtime once the data are loaded."""
        n = len(ds.y_train)
        for name in ("measure_batch_sizes", "chunk_size"):
            value = max(np.atleast_1d(getattr(self, name)), default=0)
            if value > n:
                raise ConfigError(
                    f"--{name.replace('_', '-')} {value} exceeds the {n} training examples"
                )

    def points(self) -> tuple[int, ...]:
        """The epochs measured, increasing."""
        return tuple(sorted({*self.measure_at, self.epochs}))


QUICK = {"source": "mnist5k", "epochs": 5, "measure_at": (0,), "draws": 16}


def default_batch_sizes(n: int, quick: bool) -> tuple[int, ...]:
    """1, 3, 10, 30, ... (1, 10, 100, ... when quick) below n, then n itself."""
    steps = (1,) if quick else (1, 3)
    return tuple(m * 10**k for k in range(10) for m in steps if m * 10**k < n) + (n,)


def draws_for(batch_size: int, n: int, draws: int) -> int:
    """Fewer draws for the largest batches: at most 4N examples a size, and at least 2 draws."""
    return max(2, min(draws, (4 * n) // batch_size))


def ratio(a: float, b: float) -> float:
    """a / b in float64: inf or nan (not ZeroDivisionError) when b is 0 or not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def run(cfg: Config, ctx: runtime.Context) -> dict:
    import bpjax
    from bpjax import train

    spec = cfg.spec()
    data = evaluation.device_data(ctx.data)
    x, labels = data["train"]
    n = x.shape[0]
    batch_sizes = tuple(sorted(set(cfg.measure_batch_sizes))) or default_batch_sizes(n, cfg.quick)
    k_init, k_train, k_draw = jax.random.split(jax.random.key(cfg.seed), 3)
    params = bpjax.init_params(k_init, cfg.sizes, init=cfg.init)
    tx = cfg.make_optimizer(total_steps=cfg.epochs * (n // cfg.batch_size))
    opt_state = tx.init(params)
    epoch, history, measured = 0, [], []
    restored = ctx.restore(lambda record: {"params": params, "opt_state": opt_state})
    if restored is not None:
        epoch, arrays, record = restored
        params, opt_state = arrays["params"], arrays["opt_state"]
        history, measured = record["history"], record["measured"]

    epoch_fn = train.make_sgd_epoch(
        train.make_train_step(tx, cfg.method, spec=spec), cfg.batch_size
    )
    measure = make_measure(data, spec, cfg, batch_sizes, k_draw)

    def state_of(e, p, s, rows):
        return (
            {"params": p, "opt_state": s},
            {"epoch": e, "history": list(rows), "measured": measured},
        )

    for target in cfg.points():
        if any(m["epoch"] == target for m in measured):
            continue
        if epoch < target:
            result = ctx.fit(
                epoch_fn,
                params,
                opt_state,
                epochs=target,
                start_epoch=epoch,
                history=history,
                state_of=state_of,
                epoch_args=lambda e: (x, labels, jax.random.fold_in(k_train, e)),
            )
            params, opt_state, history, epoch = (
                result.params,
                result.opt_state,
                result.history,
                target,
            )
        with ctx.phase("measure"):
            point = to_jsonable(measure(params, target))
        measured.append(point)
        ctx.say(describe(point))
    return {
        "spec": spec.to_dict(),
        "source": ctx.data.source,
        "n_train": n,
        "batch_sizes": batch_sizes,
        "history": history,
        "checkpoints": measured,
    }


def make_measure(data: dict, spec, cfg: Config, batch_sizes, k_draw):
    """``measure(params, epoch) -> dict``: the gradient's moments and the mini-batch errors."""
    import bpjax
    from bpjax import gradient_noise as gn

    x, labels = data["train"]
    ys = bpjax.one_hot(labels, cfg.sizes[-1], dtype=x.dtype)
    n = x.shape[0]
    evaluate = evaluation.make_evaluator(data, spec, ("train", "test"))
    moments_fn = jax.jit(
        functools.partial(gn.gradient_moments, spec=spec), static_argnames=("chunk_size", "method")
    )

    # x and ys are arguments, not closed over: a closed-over array is baked into the compiled
    # program as a constant (188 MB here), which makes every compile slow.
    @jax.jit
    def check_mean(params, mean, x, ys):
        """Relative difference of the chunked mean and the one-GEMM mean gradient (~1e-7)."""
        direct = bpjax.mean_grad(params, x, ys, method=cfg.method, spec=spec)
        return gn.tree_norm(jax.tree.map(jnp.subtract, mean, direct)) / gn.tree_norm(direct)

    @functools.partial(jax.jit, static_argnames=("batch_size", "draws"))
    def agreement(params, full_grad, key, x, ys, batch_size, draws):
        batches = gn.minibatch_draws(key, x.shape[0], batch_size, draws)
        return gn.minibatch_agreement(params, x, ys, full_grad, batches, spec=spec)

    def measure(params, epoch: int) -> dict:
        t0 = time.perf_counter()
        moments = jax.block_until_ready(
            moments_fn(params, x, ys, chunk_size=cfg.chunk_size, method=cfg.method)
        )
        moments_seconds = time.perf_counter() - t0
        grad_sq = float(gn.tree_dot(moments.mean, moments.mean))
        variance = float(moments.total_variance())
        rows = []
        for b in batch_sizes:
            r = draws_for(b, n, cfg.draws)
            key = jax.random.fold_in(jax.random.fold_in(k_draw, epoch), b)
            got = jax.device_get(agreement(params, moments.mean, key, x, ys, b, r))
            predicted_sq = float(gn.expected_minibatch_error(variance, n, b))
            rel_sq = ratio(predicted_sq, grad_sq)
            rows.append(
                {
                    "batch_size": b,
                    "draws": r,
                    "rms_relative_error": float(np.sqrt(np.mean(got["relative_error"] ** 2))),
                    "mean_cosine": float(np.mean(got["cosine"])),
                    "min_cosine": float(np.min(got["cosine"])),
                    "max_cosine": float(np.max(got["cosine"])),
                    "mean_squared_error": float(np.mean(got["squared_error"])),
                    "predicted_squared_error": predicted_sq,
                    "predicted_relative_error": float(np.sqrt(rel_sq)),
                    # Noise of squared size e^2 nearly orthogonal to g (many dimensions):
                    # cos ~ 1/sqrt(1 + e^2).
                    "predicted_cosine": float(1 / np.sqrt(1 + rel_sq)),
                    "relative_errors": got["relative_error"].tolist(),
                    "cosines": got["cosine"].tolist(),
                }
            )
        return {
            "epoch": epoch,
            **evaluate(params),
            "grad_norm": math.sqrt(grad_sq),
            "total_variance": variance,
            "noise_scale": ratio(variance, grad_sq),
            "chunked_mean_vs_mean_grad_rel_diff": float(check_mean(params, moments.mean, x, ys)),
            "moments_seconds": moments_seconds,
            "batches": rows,
        }

    return measure


def describe(point: dict) -> str:
    """One log line for a measurement."""
    b100 = next((r for r in point["batches"] if r["batch_size"] == 100), point["batches"][0])
    line = (
        f"epoch {point['epoch']:3d}: test acc {point['test_accuracy']:.4f}  |g|^2 "
        f"{float(point['grad_norm']) ** 2:.3g}  sigma^2 {float(point['total_variance']):.3g}"
        f"  noise scale {float(point['noise_scale']):.3g}  B={b100['batch_size']}: cos "
        f"{float(b100['mean_cosine']):.3f}, rel err {float(b100['rms_relative_error']):.3f} "
        f"(predicted {float(b100['predicted_relative_error']):.3f})"
    )
    if not math.isfinite(float(point["noise_scale"])):
        line += "  [the mean gradient is 0 or not finite: the noise-scale ratios are not finite]"
    return line


def summary(results: dict) -> str:
    head = f"{'epoch':>5} {'test acc':>8} {'|g|^2':>10} {'sigma^2':>10} {'noise scale':>11}"
    lines = [head]
    for p in results["checkpoints"]:
        lines.append(
            f"{p['epoch']:>5} {100 * float(p['test_accuracy']):>7.2f}% "
            f"{float(p['grad_norm']) ** 2:>10.3g} {float(p['total_variance']):>10.3g} "
            f"{float(p['noise_scale']):>11.3g}"
        )
    return "\n".join(lines)


EXPERIMENT = runtime.Experiment(
    name="minibatch_noise",
    description="How well a mini-batch's gradient approximates the full gradient.",
    config=Config,
    run=run,
    plot=plots.plot,
    summary=summary,
    quick=QUICK,
)


def main(argv=None):
    return runtime.main(EXPERIMENT, argv)


if __name__ == "__main__":
    main()
