"""One test example's wish list, on an untrained and a trained network, as numbers and pictures.

    python -m experiments.seeing_backprop                 # real MNIST, the first test "2"
    python -m experiments.seeing_backprop --digit 7       # the first test 7 (or --index N)
    python -m experiments.seeing_backprop --quick         # seconds, the embedded digits
    python -m experiments.seeing_backprop --epochs 5 --lr 3 --schedule constant \\
        --weight-decay 0 --method backprop                # the network of docs/seeing_backprop.md

The trained network is the untrained one after ``--epochs`` of the shared training recipe
(``--optimizer``, ``--lr``, ``--schedule``, ``--batch-size``, ``--weight-decay``; any model spec
whose cost has a hand-written dC/da^L). For the chosen test example, with ``bpjax.wish_list``, it
writes ``results.json`` and from it (``experiments/plots/seeing_backprop.py``) six figures:
``output_nudges.png`` (-dC/da^L), ``first_layer_nudges.png`` (route 2 of each first-layer neuron
as a 28x28 image), ``hebbian.png`` (|weight nudge| against its source activation),
``propagated_wishes.png`` (route 3: what each output neuron asks of the last hidden layer),
``sensitivity.png`` (the ``--top-k`` largest |dC/dtheta|, and the cost change when each alone
moves by ``--epsilon``) and ``averages.png`` (beside the means over ``--average-over`` random
training examples and over all of them).

The identities are measured too: the parameter nudges vs -backprop, the all-example mean vs
-jax.grad of the mean cost, each weight nudge vs (desire through f') x source activation, and
route 3's rows vs the previous layer's desire. Training checkpoints every ``--checkpoint-every``
epochs and ``--resume RUN_DIR`` continues it bit-identically. The measured numbers are in
``docs/seeing_backprop.md``.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from experiments import runtime
from experiments.plots import seeing_backprop as plots
from experiments.plots.seeing_backprop import NETWORKS, summary
from experiments.runtime import evaluation, options
from experiments.runtime.cli import ConfigError, flag
from experiments.runtime.wish_analysis import analyse, parameter_names, rank_profile


@dataclasses.dataclass(frozen=True)
class Config(
    runtime.DataOptions,
    runtime.ModelOptions,
    runtime.OptimizerOptions,
    runtime.TrainingOptions,
    runtime.RunOptions,
):
    index: int | None = flag(None, "the test example by its index (instead of --digit)")
    digit: int | None = flag(None, "the first test example of this digit (default 2)")
    average_over: int = flag(100, "average the wish lists of this many random training examples")
    top_k: int = flag(15, "most sensitive parameters shown")
    epsilon: float = flag(0.05, "move each sensitive parameter alone by this, the wished way")

    def check(self) -> None:
        super().check()
        if self.index is not None and self.digit is not None:
            raise ConfigError("give --index or --digit, not both")
        if self.digit is not None and not 0 <= self.digit <= 9:
            raise ConfigError(f"--digit must be 0..9, got {self.digit}")
        options.at_least("index", self.index if self.index is not None else 0, 0)
        options.at_least("average_over", self.average_over)
        options.at_least("top_k", self.top_k)
        options.positive_rate("epsilon", self.epsilon)
        if len(self.sizes) < 3:
            raise ConfigError(f"--sizes needs a hidden layer, got {','.join(map(str, self.sizes))}")
        n_params = sum(n * (m + 1) for m, n in zip(self.sizes[:-1], self.sizes[1:], strict=True))
        if self.top_k > n_params:
            raise ConfigError(f"--top-k {self.top_k} exceeds the network's {n_params} parameters")
        if self.spec().cost_function.output_grad is None:
            raise ConfigError(
                f"--cost {self.cost} has no hand-written dC/da^L (output_grad), "
                "which the wish list needs"
            )

    def check_data(self, ds) -> None:
        """Called by the runtime once the data are loaded."""
        self.example_index(ds.y_test)
        if self.average_over > len(ds.y_train):
            raise ConfigError(
                f"--average-over {self.average_over} exceeds the "
                f"{len(ds.y_train)} training examples"
            )

    def example_index(self, test_labels) -> int:
        if self.index is not None:
            if self.index >= len(test_labels):
                raise ConfigError(
                    f"--index {self.index} is out of range: the test set has "
                    f"{len(test_labels)} examples"
                )
            return self.index
        digit = 2 if self.digit is None else self.digit
        hits = np.flatnonzero(np.asarray(test_labels) == digit)
        if not len(hits):
            raise ConfigError(f"--digit {digit}: no test example of that digit")
        return int(hits[0])


QUICK = {"epochs": 3, "source": "mnist5k", "batch_size": 20}


def run(cfg: Config, ctx: runtime.Context) -> dict:
    import bpjax
    from bpjax import train

    spec = cfg.spec()
    data = evaluation.device_data(ctx.data)
    x, labels = data["train"]
    k_init, k_train, k_subset = jax.random.split(jax.random.key(cfg.seed), 3)
    untrained = bpjax.init_params(k_init, cfg.sizes, init=cfg.init)
    tx = cfg.make_optimizer(total_steps=cfg.epochs * (x.shape[0] // cfg.batch_size))
    params, opt_state, history, start = untrained, tx.init(untrained), [], 0
    restored = ctx.restore(lambda record: {"params": params, "opt_state": opt_state})
    if restored is not None:
        start, arrays, record = restored
        params, opt_state, history = arrays["params"], arrays["opt_state"], record["history"]
    epoch_fn = train.make_sgd_epoch(
        train.make_train_step(tx, cfg.method, spec=spec), cfg.batch_size
    )
    evaluate = evaluation.make_evaluator(data, spec, ("test",))
    result = ctx.fit(
        epoch_fn,
        params,
        opt_state,
        epochs=cfg.epochs,
        start_epoch=start,
        history=history,
        evaluate=evaluate,
        epoch_args=lambda e: (x, labels, jax.random.fold_in(k_train, e)),
    )

    index = cfg.example_index(ctx.data.y_test)
    subset = jax.random.choice(k_subset, x.shape[0], (cfg.average_over,), replace=False)
    networks = {}
    with ctx.phase("wish_lists"):
        for net, p in zip(NETWORKS, (untrained, result.params), strict=True):
            networks[net] = {
                **explain(p, data, index, subset, cfg, spec),
                "test_accuracy": evaluate(p)["test_accuracy"],
            }
    return {
        "spec": spec.to_dict(),
        "source": ctx.data.source,
        "history": result.history,
        "example": {
            "index": index,
            "label": int(ctx.data.y_test[index]),
            "image": ctx.data.x_test[index],
        },
        "networks": networks,
    }


def explain(params, data: dict, index: int, subset, cfg: Config, spec) -> dict:
    """Everything the figures show for one network: the example's wishes, averages, checks."""
    import bpjax

    x_test, y_test = data["test"]
    x_train, y_train = data["train"]
    n_out = cfg.sizes[-1]
    x = x_test[index]
    y = bpjax.one_hot(y_test[index], n_out, dtype=x.dtype)
    ys_train = bpjax.one_hot(y_train, n_out, dtype=x.dtype)
    r = jax.device_get(
        analyse(
            params,
            x,
            y,
            x_train[subset],
            ys_train[subset],
            x_train,
            ys_train,
            cfg.epsilon,
            top_k=cfg.top_k,
            spec=spec,
        )
    )
    one, activations, top = r["one"], r["activations"], r["top"]
    magnitudes = np.abs(r["flat"]["one"])
    names = parameter_names(params)
    # The first-layer neuron whose average weight nudge is largest: the one the data move most.
    focus = (
        int(np.nanargmax(np.sum(r["every"].layers[0].w ** 2, axis=1)))
        if np.isfinite(r["every"].layers[0].w).any()
        else 0
    )
    averages = {
        k: {
            "output": r[k].output,
            "first_layer_w": r[k].layers[0].w[focus],
            "cosine_to_all": float(r["cosine_to_all"][k]),
            "norm": float(np.linalg.norm(r["flat"][k])),
        }
        for k in ("one", "some", "every")
    }
    return {
        "cost": float(r["cost"]),
        "prediction": int(np.argmax(activations[-1])),
        "output_activations": activations[-1],
        "output_nudges": one.output,
        "layers": [
            {"b_nudges": layer.b, "w_nudges": layer.w, "source_activations": a_prev}
            for layer, a_prev in zip(one.layers, activations[:-1], strict=True)
        ],
        "propagated": {
            "asks_by_output_neuron": one.layers[-1].a_prev_by_neuron,
            "desire": one.layers[-1].a_prev,
        },
        "sensitivity": {
            "epsilon": cfg.epsilon,
            "names": [names[i] for i in top],
            "gradient_magnitudes": magnitudes[top],
            "predicted_cost_change": -cfg.epsilon * magnitudes[top],
            "measured_cost_change": r["cost_changes"],
            "n_parameters": int(magnitudes.size),
            "n_exactly_zero": int(np.sum(magnitudes == 0)),
            "profile_one": rank_profile(r["flat"]["one"]),
            "profile_every": rank_profile(r["flat"]["every"]),
        },
        "averages": {
            "focus_neuron": focus,
            "n_some": int(subset.shape[0]),
            "n_every": int(x_train.shape[0]),
            **averages,
        },
        "checks": {name: float(v) for name, v in r["checks"].items()},
    }


EXPERIMENT = runtime.Experiment(
    name="seeing_backprop",
    description="One test example's wish list on an untrained and a trained network.",
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
