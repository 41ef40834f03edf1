"""One training run of any model spec, optimizer and schedule: the tool to reach for first.

    python -m experiments.train                   # the default recipe: 784-16-16-10, 60 epochs
    python -m experiments.train --quick           # seconds: 3 epochs on the embedded digits
    python -m experiments.train --help            # every option

Nielsen's chapter-1 network (``network.py``: 784-30-10 sigmoid, quadratic cost with his 1/2,
eta 3, mini-batch 10, 30 epochs, w and b ~ N(0, 1), trained on the first 50,000 images)::

    python -m experiments.train --sizes 784,30,10 --cost quadratic_half --lr 3 \\
        --schedule constant --weight-decay 0 --batch-size 10 --epochs 30 --init standard \\
        --validation 10000

His chapter-3 network (``network2.py``: cross-entropy, L2 with lambda 5 over n = 50,000, i.e.
``--weight-decay 1e-4`` here, eta 0.5, w ~ N(0, 1/n_in)) adds ``--cost cross_entropy --lr 0.5
--weight-decay 1e-4 --init scaled``. Any optax optimizer works by name with its own options:
``--optimizer adam --lr 3e-3 --optimizer-args b1=0.8``; ``--hidden tanh``, ``--output
softmax --cost log_likelihood``, or activations and costs of your own (``--plugins MODULE``,
see ``bpjax.register_activation``).

Writes to ``--out`` (default ``runs/train/<time>-<id>/``): ``config.json`` (the config, the
data's source and fingerprint, package versions), ``results.json`` (per epoch: mean mini-batch
cost, cost and accuracy on the training, validation and test splits, training seconds; the
final and best epochs; compile, training and evaluation seconds), ``params.npz`` (the final
weights: ``w0, b0, w1, b1, ...``), ``cost_vs_epoch.png`` and ``accuracy_vs_epoch.png``.
Checkpoints every ``--checkpoint-every`` epochs; ``--resume RUN_DIR`` continues bit-identically.
"""

from __future__ import annotations

import dataclasses
import io

import jax
import numpy as np

from experiments import runtime
from experiments.plots import train as plots
from experiments.runtime import evaluation


@dataclasses.dataclass(frozen=True)
class Config(
    runtime.DataOptions,
    runtime.ModelOptions,
    runtime.OptimizerOptions,
    runtime.TrainingOptions,
    runtime.RunOptions,
):
    pass


QUICK = {"epochs": 3, "source": "mnist5k", "batch_size": 20}


def run(cfg: Config, ctx: runtime.Context) -> dict:
    import bpjax
    from bpjax import train

    spec = cfg.spec()
    data = evaluation.device_data(ctx.data)
    x, labels = data["train"]
    # The same keys as gd_vs_sgd's SGD arm: with the same flags, the same run.
    key_init, key_order = jax.random.split(jax.random.key(cfg.seed))
    epoch_keys = jax.random.split(key_order, cfg.epochs)
    params = bpjax.init_params(key_init, cfg.sizes, init=cfg.init)
    tx = cfg.make_optimizer(total_steps=cfg.epochs * (labels.shape[0] // cfg.batch_size))
    opt_state = tx.init(params)
    history, start = [], 0
    restored = ctx.restore(lambda record: {"params": params, "opt_state": opt_state})
    if restored is not None:
        start, arrays, record = restored
        params, opt_state, history = arrays["params"], arrays["opt_state"], record["history"]

    epoch_fn = train.make_sgd_epoch(
        train.make_train_step(tx, cfg.method, spec=spec), cfg.batch_size
    )
    result = ctx.fit(
        epoch_fn,
        params,
        opt_state,
        epochs=cfg.epochs,
        start_epoch=start,
        history=history,
        epoch_args=lambda e: (x, labels, epoch_keys[e]),
        evaluate=evaluation.make_evaluator(data, spec),
    )
    save_params(ctx, result.params)
    select = "validation_accuracy" if "validation" in data else "test_accuracy"
    return {
        "spec": spec.to_dict(),
        "history": result.history,
        "final": result.history[-1],
        "best": {"by": select, **evaluation.best(result.history, select)},
    }


def save_params(ctx: runtime.Context, params) -> None:
    from experiments.runtime.rundir import atomic_write_bytes

    arrays = {
        f"{name}{i}": np.asarray(layer[name])
        for i, layer in enumerate(params)
        for name in ("w", "b")
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(ctx.dir / "params.npz", buf.getvalue())


def summary(results: dict) -> str:
    final, best = results["final"], results["best"]
    splits = [s for s in evaluation.SPLITS if f"{s}_accuracy" in final]
    lines = [f"{'epoch':>5} " + " ".join(f"{s + ' acc':>14}" for s in splits)]
    for label, row in (("final", final), (f"best by {best['by'].split('_')[0]}", best)):
        accs = " ".join(f"{100 * row[f'{s}_accuracy']:>13.2f}%" for s in splits)
        lines.append(f"{row['epoch']:>5} {accs}   ({label})")
    t = results["timing_s"]
    lines.append(f"training {t.get('train', 0):.1f} s, compile {t.get('compile', 0):.1f} s")
    return "\n".join(lines)


EXPERIMENT = runtime.Experiment(
    name="train",
    description="One training run of any model spec and optimizer on MNIST.",
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
