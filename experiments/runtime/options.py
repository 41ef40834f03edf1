"""The options experiments share, declared once: each is a field with one name, type, default
and help, grouped in pieces (data, model, decay, optimizer, training, run) that an experiment's
config inherits. Each piece checks its own fields (``check``), before any data is loaded or
anything compiled; a value that cannot run raises ``ConfigError`` naming the flag.

The defaults are the main experiment's recipe (784-16-16-10 sigmoid, squared error, SGD with
mini-batch 100, learning rate 6 with a cosine decay, weight decay 3e-5, 60 epochs), so every
script starts from the same tuned network.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import optax

from bpjax import optimizers
from bpjax.data import SOURCES
from bpjax.grads import EXAMPLE_METHODS
from bpjax.params import INITS
from experiments.runtime.cli import ConfigError, flag

FLOAT32_MAX = float(np.finfo(np.float32).max)
MNIST_IN, MNIST_OUT = 784, 10


# --- checks shared by the pieces and by experiments' own fields ---------------------------------


def at_least(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


def positive_rate(name: str, value: float) -> None:
    """A learning rate: finite, > 0 and representable in float32 (training runs in float32)."""
    flag_name = f"--{name.replace('_', '-')}"
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag_name} must be a finite number > 0, got {value}")
    if value > FLOAT32_MAX:
        raise ConfigError(f"{flag_name} {value:g} overflows float32 (largest {FLOAT32_MAX:.3g})")


def non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")


def mnist_sizes(sizes: Sequence[int], name: str = "sizes") -> None:
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"--{name} needs at least two layer sizes, each >= 1, got {sizes}")
    if sizes[0] != MNIST_IN or sizes[-1] != MNIST_OUT:
        raise ConfigError(
            f"--{name} must start with {MNIST_IN} (28x28 pixels) and end with {MNIST_OUT} "
            f"(digits), got {','.join(map(str, sizes))}"
        )


@dataclasses.dataclass(frozen=True)
class Options:
    """The root of every piece: ``check`` chains through all of them (cooperative ``super``)."""

    def check(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class DataOptions(Options):
    source: str = flag(
        "auto",
        "where the digits come from: auto finds full MNIST (--data-dir, $BPJAX_DATA_DIR, "
        "a prepared TFDS copy) and otherwise uses the embedded 5,000 digits",
        choices=SOURCES,
    )
    # Resumable: a run may find its data elsewhere; the data's fingerprint decides if it is
    # the same data.
    data_dir: str | None = flag(None, "directory holding the four MNIST IDX files", resumable=True)
    validation: int = flag(
        0,
        "examples carved from the END of the training set as a validation split "
        "(Nielsen's 50,000/10,000 split is 10000)",
    )

    def check(self) -> None:
        super().check()
        at_least("validation", self.validation, 0)
        if self.data_dir is not None and self.source == "mnist5k":
            raise ConfigError(
                "--data-dir has no effect with --source mnist5k (the embedded "
                "digits); give --source idx or auto to use it"
            )


@dataclasses.dataclass(frozen=True)
class ModelOptions(Options):
    sizes: tuple[int, ...] = flag((784, 16, 16, 10), "layer sizes, input first", metavar="N,N,...")
    init: str = flag(
        "scaled",
        "initial weights: scaled w ~ N(0, 1/n_in), b ~ N(0, 1); standard w, b ~ N(0, 1)",
        choices=INITS,
    )
    hidden: str = flag("sigmoid", "activation of the hidden layers (bpjax.Spec)")
    output: str = flag("sigmoid", "activation of the output layer (bpjax.Spec)")
    cost: str = flag(
        "quadratic",
        "cost: quadratic = sum (a - y)^2, quadratic_half = half that "
        "(Nielsen's), cross_entropy, log_likelihood (bpjax.Spec)",
    )
    method: str = flag(
        "autodiff", "gradient: jax autodiff, or the hand-derived backprop", choices=EXAMPLE_METHODS
    )
    plugins: tuple[str, ...] = flag(
        (),
        "Python modules to import first, e.g. ones that register activations or costs",
        metavar="MODULE,...",
    )

    def spec(self):
        from bpjax.spec import Spec

        return Spec(hidden=self.hidden, output=self.output, cost=self.cost)

    def check(self) -> None:
        super().check()
        mnist_sizes(self.sizes)
        try:
            self.spec()
        except ValueError as e:  # its message lists what is valid
            raise ConfigError(f"--hidden/--output/--cost: {e}") from None


@dataclasses.dataclass(frozen=True)
class DecayOptions(Options):
    """The two decays every optimizer's update gets: of the learning rate (a schedule with peak
    1 over the run) and of the weights (L2). Shared by ``OptimizerOptions`` and experiments that
    choose their optimizers and learning rates their own way (sweeps)."""

    schedule: str = flag(
        "cosine", "learning-rate schedule over the run", choices=optimizers.SCHEDULES
    )
    weight_decay: float = flag(
        3e-5, "L2 regularisation lambda: descent on C + (lambda/2)|w|^2 (0 = none)"
    )

    def check(self) -> None:
        super().check()
        non_negative("weight_decay", self.weight_decay)


@dataclasses.dataclass(frozen=True)
class OptimizerOptions(DecayOptions):
    optimizer: str = flag(
        "sgd",
        "optimizer by name: sgd, momentum, nesterov, adam, or any optax "
        "optimizer taking a learning_rate",
    )
    lr: float = flag(6.0, "learning rate (the peak, under a schedule)")
    optimizer_args: tuple[str, ...] = flag(
        (),
        "the optimizer's own options as KEY=VALUE, e.g. b1=0.8 or momentum=0.5",
        metavar="KEY=VALUE,...",
    )

    def optimizer_kwargs(self) -> dict:
        return parse_kwargs(self.optimizer_args, "optimizer_args")

    def make_optimizer(self, total_steps: int) -> optax.GradientTransformation:
        """The optimizer with its schedule over ``total_steps`` and the weight decay."""
        return optimizers.make_optimizer(
            self.optimizer,
            self.lr,
            schedule=self.schedule,
            total_steps=total_steps,
            l2=self.weight_decay,
            **self.optimizer_kwargs(),
        )

    def check(self) -> None:
        super().check()
        positive_rate("lr", self.lr)
        try:
            optimizers.make_optimizer(self.optimizer, self.lr, **self.optimizer_kwargs())
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--optimizer {self.optimizer}: {e}") from None


@dataclasses.dataclass(frozen=True)
class TrainingOptions(Options):
    epochs: int = flag(60, "passes over the training set")
    batch_size: int = flag(100, "mini-batch size")

    def check(self) -> None:
        super().check()
        at_least("epochs", self.epochs)
        at_least("batch_size", self.batch_size)


@dataclasses.dataclass(frozen=True)
class RunOptions(Options):
    seed: int = flag(0, "PRNG seed (initial weights and shuffles)")
    out: str | None = flag(
        None,
        "output directory, new or empty (default: runs/<experiment>/<time>-<id>)",
        resumable=True,
    )
    resume: str | None = flag(
        None,
        "continue the killed or interrupted run in this directory from its last intact checkpoint",
        resumable=True,
        metavar="RUN_DIR",
    )
    checkpoint_every: int = flag(
        10, "checkpoint every k epochs (and at the end of training)", resumable=True
    )
    keep_checkpoints: int = flag(2, "keep the last k checkpoints", resumable=True)
    quick: bool = flag(False, "a seconds-long smoke run on small settings", resumable=True)

    def check(self) -> None:
        super().check()
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be in [0, 2^32), got {self.seed}")
        at_least("checkpoint_every", self.checkpoint_every)
        at_least("keep_checkpoints", self.keep_checkpoints)
        if self.resume is not None and self.out is not None:
            raise ConfigError(
                "give --out or --resume, not both (a resumed run continues in its own directory)"
            )


def parse_kwargs(items: Sequence[str], name: str) -> dict:
    """``("b1=0.8", "nesterov=True")`` -> ``{"b1": 0.8, "nesterov": True}`` (Python literals;
    anything else stays a string)."""
    import ast

    kwargs = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"--{name.replace('_', '-')} expects KEY=VALUE, got {item!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        kwargs[key.strip()] = value
    return kwargs
