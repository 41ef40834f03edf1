"""Compute to a target: SGD and full-batch gradient descent, each with its learning rate tuned on
the validation split, measured in example-gradients and seconds to a validation accuracy.

    out = compare(arms, params0, data, spec=spec, levels=(0.9, 0.95), done={}, on_phase=save)

``arms`` holds an ``Arm`` for "sgd" and "gd" (a ``make_sweep_optimizer`` optimizer, its grid of
learning rates, batch size, step budget, order key, evaluation interval cap). Four phases, each
checkpointable (``on_phase(i, done)`` after phase i; ``done`` holds the finished phases' JSON
results, so a resume skips them):

1. ``select_sgd``: every SGD rate (vmapped, same initial params and shuffle) runs its whole
   budget; the rate with the highest final validation accuracy wins.
2. ``select_gd``: every GD rate runs until one reaches the lowest of ``levels`` (e.g. 90%)
   on validation, or the budget; the rate that reaches it in the fewest steps wins, or if none
   does, the one with the highest validation accuracy at the budget.
3. ``sgd`` and 4. ``gd``: the chosen rate alone (R = 1, so its seconds are one run's), SGD for
   its budget, GD until the target (the SGD winner's final validation accuracy) or its budget.

Runs are evaluated after 1, 1, 2, 2, 4, 4, ... steps (the interval doubles every two evaluations
up to the arm's cap: even points on a log axis), on the training split (cost and accuracy of the
params, no L2 term), the validation split and the test split. ``seconds`` counts the compiled
training chunks only (ahead-of-time compiled; evaluation excluded). Compute to a level is
interpolated linearly between the two evaluations around the crossing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SPLITS = ("train", "validation", "test")


class Arm(NamedTuple):
    tx: Any  # bpjax.optimizers.make_sweep_optimizer(...)
    lrs: tuple[float, ...]  # the grid the validation sweep picks from
    batch_size: int  # == n: full-batch gradient descent
    max_steps: int
    order_key: jax.Array  # every run's shuffle (epoch e: fold_in(order_key, e))
    eval_cap: int  # most steps between evaluations


def intervals(total: int, cap: int) -> list[int]:
    """Steps between evaluations: 1, 1, 2, 2, 4, 4, ... (at most ``cap``), summing to ``total``."""
    out, k = [], 1
    while sum(out) < total:
        out.append(min(k, cap, total - sum(out)))
        if len(out) % 2 == 0:
            k *= 2
    return out


def make_chunk(step, batch_size: int, n: int, n_classes: int = 10):
    """``chunk(params, opt_state, x, labels, orders, offset, k)``: ``k`` steps (a traced int, so
    one compile serves every k) of each run from batch ``offset`` of its ``orders``
    (R, epochs * n // B, B); full-batch steps on all of ``x`` when ``batch_size == n``."""
    from bpjax.cost import one_hot
    from bpjax.data.pixels import as_inputs, input_dtype, take_rows

    def one_run(params, opt_state, x, labels, order, offset, k):
        dtype = input_dtype(params, x)
        full = (as_inputs(x, dtype), one_hot(labels, n_classes, dtype=dtype))

        def body(j, carry):
            if batch_size == n:
                xb, yb = full
            else:
                idx = order[offset + j]
                xb = as_inputs(take_rows(x, idx), dtype)
                yb = one_hot(labels[idx], n_classes, dtype=dtype)
            return step(*carry, xb, yb)[:2]

        return jax.lax.fori_loop(0, k, body, (params, opt_state))

    return jax.jit(jax.vmap(one_run, in_axes=(0, 0, None, None, 0, None, None)))


def train_logged(
    tx,
    params,
    opt_state,
    data: dict,
    arm: Arm,
    *,
    spec,
    method="autodiff",
    stop: Callable[[np.ndarray], bool] | None = None,
) -> dict[str, list]:
    """R runs (leading axis on ``params``/``opt_state``) for ``arm.max_steps`` steps or until
    ``stop(validation_accuracy (R,))``; the history as lists: "step", "examples", "seconds"
    (n_evals,) and "<split>_cost"/"<split>_accuracy" (n_evals, R)."""
    from bpjax.data import epoch_batches
    from bpjax.train import make_evaluate, make_train_step

    x, labels = data["train"]
    n, b = labels.shape[0], arm.batch_size
    per_epoch = n // b
    step_fn = make_train_step(tx, method, spec=spec)
    chunk = make_chunk(getattr(step_fn, "unchecked", step_fn), b, n)
    evaluate = jax.jit(jax.vmap(make_evaluate(spec=spec), in_axes=(0, None, None)))
    r = jax.tree.leaves(params)[0].shape[0]
    keys = jnp.stack([arm.order_key] * r)

    def orders_from(epoch):  # two epochs' batches, so a chunk may run across the boundary
        if b == n:
            return jnp.zeros((r, 2, 1), jnp.int32)
        of = jax.vmap(lambda k: epoch_batches(k, n, b))
        return jnp.concatenate(
            [of(jax.vmap(jax.random.fold_in, (0, None))(keys, e)) for e in (epoch, epoch + 1)],
            axis=1,
        )

    hist: dict[str, list] = {"step": [], "examples": [], "seconds": []}

    def record(p, step, seconds):
        hist["step"].append(step)
        hist["examples"].append(step * b)
        hist["seconds"].append(seconds)
        for name in SPLITS:
            if name in data:
                m = evaluate(p, *data[name])
                for what in ("cost", "accuracy"):
                    hist.setdefault(f"{name}_{what}", []).append(
                        np.asarray(m[what], dtype=np.float64).tolist()
                    )
        return np.asarray(hist["validation_accuracy"][-1])

    compiled = None
    epoch, j, step, seconds = 0, 0, 0, 0.0
    orders = orders_from(epoch)
    value = record(params, 0, 0.0)
    for k in intervals(arm.max_steps, min(arm.eval_cap, per_epoch)):
        if stop is not None and stop(value):
            break
        if j >= per_epoch:
            epoch, j = epoch + 1, j - per_epoch
            orders = orders_from(epoch)
        args = (params, opt_state, x, labels, orders, np.int32(j), np.int32(k))
        if compiled is None:  # ahead of time, so the seconds are training alone
            compiled = chunk.lower(*args).compile()
        t0 = time.perf_counter()
        params, opt_state = jax.block_until_ready(compiled(*args))
        seconds += time.perf_counter() - t0
        j, step = j + k, step + k
        value = record(params, step, seconds)
    return hist


def reached(hist: dict, level: float, run: int = 0, metric="validation_accuracy") -> dict:
    """Where run ``run`` first reached ``level``: steps, examples and seconds (interpolated), or
    the best it reached and the compute to that point (``"reached": False``)."""
    v = np.array([row[run] for row in hist[metric]], dtype=np.float64)
    v[~np.isfinite(v)] = -np.inf
    cols = {c: np.asarray(hist[c], dtype=np.float64) for c in ("step", "examples", "seconds")}
    hits = np.flatnonzero(v >= level)
    total = {f"{c}_total": float(a[-1]) for c, a in cols.items()}
    if hits.size == 0:
        i = int(np.argmax(v))
        return {
            "reached": False,
            "best": float(v[i]),
            **{c: float(a[i]) for c, a in cols.items()},
            **total,
        }
    i = int(hits[0])
    f = 1.0 if i == 0 or not np.isfinite(v[i - 1]) else (level - v[i - 1]) / (v[i] - v[i - 1])
    at = {c: float(a[i] if i == 0 else a[i - 1] + f * (a[i] - a[i - 1])) for c, a in cols.items()}
    return {"reached": True, "best": float(v.max()), **at, **total}


def _runs(tx, params0, lrs):
    from bpjax import sweep

    keys = jax.vmap(jax.random.key)(jnp.zeros(len(lrs), jnp.uint32))  # unused: same params0
    return sweep.init_runs(tx, lambda _: params0, keys, np.asarray(lrs, np.float64))


def _final(hist, key="validation_accuracy") -> np.ndarray:
    v = np.asarray(hist[key][-1], dtype=np.float64)
    return np.where(np.isfinite(v), v, -np.inf)


def compare(
    arms: dict[str, Arm],
    params0,
    data: dict,
    *,
    spec,
    method="autodiff",
    levels=(0.9, 0.95),
    done: dict | None = None,
    on_phase: Callable[[int, dict], None] = lambda i, done: None,
    timed: Callable[[str], Any] | None = None,
) -> dict:
    """The four phases of the module docstring; returns ``done`` completed with the table."""
    import contextlib

    done = dict(done or {})
    timed = timed or (lambda name: contextlib.nullcontext())
    sgd, gd = arms["sgd"], arms["gd"]

    def phase(i, name, body):
        if name not in done:
            with timed(f"to_target_{name}"):
                done[name] = body()
            on_phase(i, done)
        return done[name]

    def select_sgd():
        hist = train_logged(
            sgd.tx, *_runs(sgd.tx, params0, sgd.lrs), data, sgd, spec=spec, method=method
        )
        values = _final(hist)
        return {
            "split": "validation",
            "metric": "final validation accuracy",
            "lrs": list(sgd.lrs),
            "values": values.tolist(),
            "chosen": float(sgd.lrs[int(np.argmax(values))]),
            "history": hist,
        }

    sel_sgd = phase(1, "select_sgd", select_sgd)
    target, first = float(np.max(sel_sgd["values"])), min(levels)

    def select_gd():
        hist = train_logged(
            gd.tx,
            *_runs(gd.tx, params0, gd.lrs),
            data,
            gd,
            spec=spec,
            method=method,
            stop=lambda v: bool((v >= first).any()),
        )
        got = [reached(hist, first, i) for i in range(len(gd.lrs))]
        steps = np.array([g["step"] if g["reached"] else np.inf for g in got])
        if np.isfinite(steps).any():
            metric, values = f"validation steps to {100 * first:g}%", steps
            best = int(np.argmin(steps))
        else:
            metric, values = "validation accuracy at the budget", _final(hist)
            best = int(np.argmax(values))
        return {
            "split": "validation",
            "metric": metric,
            "lrs": list(gd.lrs),
            "values": [float(v) for v in values],
            "chosen": float(gd.lrs[best]),
            "history": hist,
        }

    sel_gd = phase(2, "select_gd", select_gd)

    def alone(arm, lr, stop=None):
        return lambda: train_logged(
            arm.tx, *_runs(arm.tx, params0, [lr]), data, arm, spec=spec, method=method, stop=stop
        )

    hist_sgd = phase(3, "sgd", alone(sgd, sel_sgd["chosen"]))
    hist_gd = phase(4, "gd", alone(gd, sel_gd["chosen"], lambda v: bool(v[0] >= target)))
    rows = []
    for level in levels:
        a, b = reached(hist_sgd, level), reached(hist_gd, level)
        # An arm that never reached the level used at least its whole run: a bound, not a ratio.
        bound = {(True, True): "=", (True, False): ">=", (False, True): "<="}.get(
            (a["reached"], b["reached"])
        )
        row = {"level": level, "sgd": a, "gd": b, "ratio_is": bound}
        for c in ("examples", "seconds"):
            num = b[c] if b["reached"] else b[f"{c}_total"]
            den = a[c] if a["reached"] else a[f"{c}_total"]
            row[f"{c}_ratio"] = num / den if bound and den > 0 else None
        rows.append(row)
    return {
        **done,
        "target": target,
        "levels": list(levels),
        "budget_steps": {"sgd": sgd.max_steps, "gd": gd.max_steps},
        "batch_size": {"sgd": sgd.batch_size, "gd": gd.batch_size},
        "table": rows,
    }


def table(tt: dict) -> str:
    """The markdown table of ``compare``'s result."""
    sel = {a: tt[f"select_{a}"] for a in ("sgd", "gd")}
    lines = [
        f"Learning rates chosen on the validation split: SGD {sel['sgd']['chosen']:g} "
        f"(grid {', '.join(f'{v:g}' for v in sel['sgd']['lrs'])}; {sel['sgd']['metric']}), "
        f"GD {sel['gd']['chosen']:g} (grid {', '.join(f'{v:g}' for v in sel['gd']['lrs'])}; "
        f"{sel['gd']['metric']}). Target: {100 * tt['target']:.2f}% validation (SGD's "
        f"final); GD budget {tt['budget_steps']['gd']} full-batch steps.",
        "",
        "| validation accuracy | SGD example-gradients | SGD seconds | GD example-gradients "
        "| GD seconds | GD / SGD examples | GD / SGD seconds |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(r):
        note = "" if r["reached"] else f" (best {100 * r['best']:.2f}%)"
        return f"{r['examples']:,.0f}{note}", f"{r['seconds']:.2f}"

    for row in tt["table"]:
        (ea, sa), (eb, sb) = cell(row["sgd"]), cell(row["gd"])
        sign = {"=": "", ">=": "> ", "<=": "< "}.get(row["ratio_is"], "")
        ratio = [
            f"{sign}{row[k]:.3g}×" if row[k] is not None else "–"
            for k in ("examples_ratio", "seconds_ratio")
        ]
        lines.append(
            f"| {100 * row['level']:.0f}% | {ea} | {sa} | {eb} | {sb} | {ratio[0]} | {ratio[1]} |"
        )
    for arm in ("sgd", "gd"):
        h = tt[arm]
        lines.append(
            f"\n{arm.upper()} at the end: {h['step'][-1]} steps, {h['examples'][-1]:,} "
            f"example-gradients, {h['seconds'][-1]:.1f} s; test accuracy "
            f"{100 * h['test_accuracy'][-1][0]:.2f}%, training cost "
            f"{h['train_cost'][-1][0]:.4f}."
        )
    return "\n".join(lines)


def run_phase(cfg, ctx, data, params0, key_sgd, steps, done, save) -> dict:
    """The ``--to-target`` comparison for a gd_vs_sgd config: SGD (the config's optimizer and
    schedule at ``cfg.sgd_lrs``) and full-batch GD (``cfg.gd_lrs``), both with its L2."""
    from bpjax.optimizers import make_sweep_optimizer

    n = data["train"][0].shape[0]
    sgd = Arm(
        make_sweep_optimizer(
            cfg.optimizer,
            schedule=cfg.schedule,
            total_steps=cfg.epochs * steps,
            l2=cfg.weight_decay,
            **cfg.optimizer_kwargs(),
        ),
        cfg.sgd_lrs,
        cfg.batch_size,
        cfg.epochs * steps,
        key_sgd,
        max(1, steps // 5),
    )
    gd = Arm(
        make_sweep_optimizer("sgd", l2=cfg.weight_decay), cfg.gd_lrs, n, cfg.gd_budget, key_sgd, 16
    )
    out = compare(
        {"sgd": sgd, "gd": gd},
        params0,
        data,
        spec=cfg.spec(),
        method=cfg.method,
        done=done,
        on_phase=save,
        timed=ctx.phase,
    )
    out["table_md"] = table(out)
    return out
