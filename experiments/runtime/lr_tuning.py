"""Tuning a learning rate to reach a validation-accuracy target in the fewest steps: a grid of
rates x seeds trained as one vmapped program (``experiments.runtime.to_target``), stopped as
soon as one rate has every seed at the target, the grid extended past an edge that wins."""

from __future__ import annotations

import numpy as np


def tune_batch_size(cfg, ctx, data: dict, b: int, lrs: list[float]) -> dict:
    """Sweep B's learning-rate grid ``lrs`` (seeds x rates in one program), extending it past
    an edge that wins; the row of the winning rate. ``cfg``: an ``experiments.batch_size``
    config (seeds, target, budget, evaluation interval, model)."""
    x, labels = data["train"]
    n = x.shape[0]
    budget = max(cfg.max_epochs * (n // b), cfg.min_steps)
    every = max(1, cfg.eval_examples // b)
    tried: dict[float, dict] = {}
    pending, extensions = list(lrs), 0
    while pending:
        best = winner(tried)
        limit = budget if best is None else int(np.ceil(np.max(tried[best]["steps"]))) + every
        tried.update(sweep_rates(cfg, data, b, pending, limit, every))
        best = winner(tried)
        ordered = sorted(tried)
        pending = []
        at_edge = len(ordered) > 1 and best in (ordered[0], ordered[-1])
        if best is not None and extensions < cfg.extend and at_edge:
            factor = ordered[1] / ordered[0] if len(ordered) > 1 else 2.0
            pending = [best / factor if best == ordered[0] else best * factor]
            extensions += 1
    best = winner(tried)
    row = {
        "batch_size": b,
        "lrs_tried": sorted(tried),
        "eval_every": every,
        "budget_steps": budget,
        "seconds": sum(t["seconds"] for t in tried.values()),
        "tried": {f"{lr:.6g}": {"steps": tried[lr]["steps"].tolist()} for lr in sorted(tried)},
    }
    if best is None:
        ctx.say(f"B={b}: no learning rate of {sorted(tried)} reached the target in {budget} steps")
        return {
            **row,
            "lr": None,
            "steps": [np.nan] * cfg.seeds,
            "steps_mean": np.nan,
            "steps_std": np.nan,
            "params_at_target": [],
        }
    steps = tried[best]["steps"]
    return {
        **row,
        "lr": best,
        "lr_at_edge": len(tried) > 1 and best in (min(tried), max(tried)),
        "steps": steps.tolist(),
        "steps_mean": float(steps.mean()),
        "steps_std": float(steps.std(ddof=1)) if steps.size > 1 else 0.0,
        "examples_mean": float(steps.mean() * b),
        "params_at_target": tried[best]["params"],
    }


def winner(tried: dict[float, dict]) -> float | None:
    """The rate whose slowest seed reached the target first (all its seeds must reach it)."""
    done = {lr: np.max(t["steps"]) for lr, t in tried.items() if np.isfinite(t["steps"]).all()}
    return min(done, key=done.get) if done else None


def sweep_rates(
    cfg, data: dict, b: int, lrs: list[float], max_steps: int, every: int
) -> dict[float, dict]:
    """Train ``lrs`` x seeds together until one rate has every seed at the target."""
    import jax

    import bpjax
    from bpjax import optimizers, sweep
    from experiments.runtime.to_target import train_to_target

    x, labels = data["train"]
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    rates, run_seeds = sweep.run_grid(lrs, seeds)
    pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(
        jax.numpy.asarray(run_seeds, "uint32")
    )
    tx = optimizers.make_sweep_optimizer("sgd")
    params, opt_state = sweep.init_runs(
        tx, lambda k: bpjax.init_params(k, cfg.sizes, init=cfg.init), pairs[:, 0], rates
    )
    n_seeds = len(seeds)

    def one_rate_done(hit):
        return bool(hit.reshape(len(lrs), n_seeds).all(axis=1).any())

    got = train_to_target(
        tx,
        params,
        opt_state,
        x,
        labels,
        pairs[:, 1],
        batch_size=b,
        eval_set=data["validation"],
        target=cfg.target,
        eval_every=every,
        max_steps=max_steps,
        spec=cfg.spec(),
        method=cfg.method,
        stop=one_rate_done,
    )
    steps = got.steps.reshape(len(lrs), n_seeds)
    return {
        lr: {
            "steps": steps[i],
            "seconds": got.seconds / len(lrs),
            "params": got.params_at_target[i * n_seeds : (i + 1) * n_seeds],
        }
        for i, lr in enumerate(lrs)
    }
