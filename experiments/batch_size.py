"""Steps and examples to a target against batch size, the fitted critical batch size, and the
gradient noise scale that is meant to predict it (McCandlish et al. 2018).

    python -m experiments.batch_size --validation 10000 --output softmax --cost log_likelihood
    python -m experiments.batch_size --quick          # seconds: mnist5k, 3 batch sizes, 2 seeds
    python -m experiments.batch_size --replot RUN_DIR # figures + table.md from results.json

For every batch size B (``--batch-sizes``; 0 = all N training examples, i.e. full-batch gradient
descent), plain SGD with a constant learning rate trains ``--seeds`` seeds x a log grid of
learning rates (``lr_max * B / (B + lr_knee)`` times ``--lr-factors``; from ``--saturated-from``
on, where the tuned rate has stopped growing and a step costs B examples, times
``--saturated-factors``, by default the guess alone) as one vmapped program,
evaluated on the validation split every ``--eval-examples`` examples (at least every step), and
stops as soon as one learning rate has every seed at ``--target`` validation accuracy: that rate
is B's tuned rate (fewest steps for its slowest seed). If it lies at the edge of the grid the
grid is extended that way (``--extend`` times). S = that rate's steps to the target (mean over
seeds, interpolated between evaluations), E = B S. ``bpjax.scaling`` fits S_min and E_min of
(S/S_min - 1)(E/E_min - 1) = 1 to the seed means (and to each seed alone, for error bars), and
B_crit = E_min / S_min. At the point where each tuned run reaches the target the experiment
also measures the gradient noise scale B_noise = tr(Sigma) / |G|^2 over all N training examples
(``bpjax.gradient_noise.gradient_moments``): the model predicts B_crit ~ B_noise.

Budget: each run stops at ``--max-epochs`` epochs or ``--min-steps`` steps, whichever is more.

Writes ``results.json``, ``table.md``, ``steps_vs_examples.png`` (S against E with the fitted
hyperbola), ``noise_scale.png`` (B_noise at the target for every B, with B_crit).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import runtime
from experiments.plots import batch_size as plots
from experiments.plots.batch_size import row_line, table
from experiments.runtime import options
from experiments.runtime.cli import flag
from experiments.runtime.lr_tuning import tune_batch_size
from experiments.runtime.lr_tuning import winner as _winner  # noqa: F401 (the tests')

DEFAULT_BATCH_SIZES = (1, 4, 16, 64, 256, 1024, 4096, 16384, 0)


@dataclasses.dataclass(frozen=True)
class Config(runtime.DataOptions, runtime.ModelOptions, runtime.RunOptions):
    batch_sizes: tuple[int, ...] = flag(
        DEFAULT_BATCH_SIZES,
        "mini-batch sizes (0: all N training examples, full-batch gradient descent)",
        metavar="B,...",
    )
    target: float = flag(0.9, "validation accuracy every run trains to")
    seeds: int = flag(3, "seeds per learning rate")
    lr_max: float = flag(4.0, "the learning-rate guess lr_max * B / (B + lr_knee) centres B's grid")
    lr_knee: float = flag(100.0, "batch size where the guessed rate is half of --lr-max")
    lr_factors: tuple[float, ...] = flag((0.5, 1.0, 2.0), "B's grid: the guess times these")
    saturated_from: int = flag(
        8192,
        "from this batch size on, the grid is --saturated-factors "
        "(the tuned rate has stopped growing; each step costs B examples)",
    )
    saturated_factors: tuple[float, ...] = flag(
        (1.0,), "the grid's factors from --saturated-from on"
    )
    extend: int = flag(2, "times the grid may grow past an edge where the best rate lies")
    eval_examples: int = flag(2500, "evaluate every this many examples (at least every step)")
    max_epochs: int = flag(20, "budget per run in epochs (or --min-steps steps if more)")
    min_steps: int = flag(600, "budget per run in steps, at least")
    noise_chunk: int = flag(100, "per-example gradients held at once for B_noise")

    def check(self) -> None:
        super().check()
        if self.validation < 1:
            raise runtime.ConfigError(
                "--validation: the target is measured on a validation "
                "split; give one, e.g. --validation 10000"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 0:
            raise runtime.ConfigError(
                f"--batch-sizes must be >= 1 (or 0: all), got {self.batch_sizes}"
            )
        if not 0 < self.target < 1:
            raise runtime.ConfigError(f"--target must be an accuracy in (0, 1), got {self.target}")
        options.positive_rate("lr_max", self.lr_max)
        options.positive_rate("lr_knee", self.lr_knee)
        for f in (*self.lr_factors, *self.saturated_factors):
            options.positive_rate("lr_factors", f)
        if not self.lr_factors or not self.saturated_factors:
            raise runtime.ConfigError("--lr-factors and --saturated-factors need >= 1 value")
        for name in ("seeds", "eval_examples", "max_epochs", "min_steps", "noise_chunk"):
            options.at_least(name, getattr(self, name))
        options.at_least("extend", self.extend, 0)

    def check_data(self, ds) -> None:
        n = len(ds.y_train)
        if max(self.batch_sizes) > n:
            raise runtime.ConfigError(
                f"--batch-sizes {max(self.batch_sizes)} is larger than the "
                f"{n} training examples (0 means all of them)"
            )


QUICK = {
    "source": "mnist5k",
    "validation": 1000,
    "batch_sizes": (8, 64, 0),
    "seeds": 2,
    "target": 0.8,
    "lr_factors": (1.0, 2.0),
    "extend": 0,
    "min_steps": 200,
    "max_epochs": 10,
    "eval_examples": 500,
}


def run(cfg: Config, ctx: runtime.Context) -> dict:
    import jax

    from bpjax import scaling
    from experiments.runtime import evaluation

    data = evaluation.device_data(ctx.data)
    n = data["train"][1].shape[0]
    rows: list[dict] = []
    restored = ctx.restore(lambda record: {"rows_done": np.zeros((), np.int64)})
    if restored is not None:
        rows = restored[2]["rows"]
    moments = jax.jit(_noise_scale, static_argnames=("chunk_size", "spec"))
    sizes = [b or n for b in cfg.batch_sizes]
    for i, b in enumerate(sizes[len(rows) :], start=len(rows)):
        with ctx.training(), ctx.phase("training"):
            row = tune_batch_size(cfg, ctx, data, b, lr_grid(cfg, b))
        with ctx.phase("noise_scale"):
            x, labels = data["train"]
            row["b_noise"] = [
                float(moments(p, x, labels, chunk_size=cfg.noise_chunk, spec=cfg.spec()))
                for p in row.pop("params_at_target")
                if p is not None
            ]
        rows.append(row)
        ctx.say(row_line(row))
        ctx.epoch_end(
            i + 1,
            lambda: ({"rows_done": np.asarray(len(rows))}, {"rows": rows}),
            final=i + 1 == len(sizes),
        )
    results = {"spec": cfg.spec().to_dict(), "n_train": n, "target": cfg.target, "rows": rows}
    done = [r for r in rows if np.isfinite(float(r["steps_mean"]))]
    if len({r["batch_size"] for r in done}) >= 2:
        s = np.array([r["steps_mean"] for r in done], dtype=float)
        b = np.array([r["batch_size"] for r in done], dtype=np.float64)
        results["fit"] = scaling.fit_steps_examples(s, s * b)._asdict()
        per_seed = np.array([r["steps"] for r in done], dtype=float)  # (n_B, seeds)
        fits = [
            scaling.fit_steps_examples(per_seed[:, j], per_seed[:, j] * b)._asdict()
            for j in range(per_seed.shape[1])
            if np.isfinite(per_seed[:, j]).all()
        ]
        results["fit_per_seed"] = fits
    results["table"] = table(results)
    return results


def _noise_scale(params, x, labels, *, chunk_size, spec):
    """B_noise = tr(Sigma) / |G|^2 of the per-example gradients over all of ``x``."""
    from bpjax import gradient_noise, one_hot
    from bpjax.train import as_inputs, input_dtype

    xs = as_inputs(x, input_dtype(params, x))
    moments = gradient_noise.gradient_moments(
        params, xs, one_hot(labels, 10, dtype=xs.dtype), chunk_size, spec=spec
    )
    return moments.total_variance() / gradient_noise.tree_dot(moments.mean, moments.mean)


def lr_grid(cfg: Config, b: int) -> list[float]:
    guess = cfg.lr_max * b / (b + cfg.lr_knee)
    factors = cfg.saturated_factors if b >= cfg.saturated_from else cfg.lr_factors
    return [guess * f for f in sorted(set(factors))]


def summary(results: dict) -> str:
    return results["table"]


EXPERIMENT = runtime.Experiment(
    name="batch_size",
    description="Steps and examples to a target vs batch size; B_crit vs the gradient noise scale.",
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
