"""The model spec: which activation the hidden layers and the output layer use, and which cost.

``Spec(hidden="sigmoid", output="sigmoid", cost="quadratic")`` names entries of the activation
registry (``bpjax.activations``) and the cost registry (``bpjax.cost``). It is a frozen,
hashable dataclass: pass it as a static argument to ``jax.jit`` (``static_argnames="spec"``);
equal specs share one compiled function. Layer sizes live in the params, not here.

A spec is checked when it is made: unknown names raise a ValueError listing the valid ones, and
combinations that make no sense (softmax in a hidden layer; ``cross_entropy`` without a sigmoid
output; ``log_likelihood`` without softmax) raise a ValueError saying which are allowed.

User code can add activations and costs (``register_activation``, ``register_cost``) and then
name them here; ``import_plugins`` imports modules that do so (the experiments' ``--plugins
MODULE``).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from bpjax.activations import Activation, activation_names, get_activation

if TYPE_CHECKING:
    from bpjax.cost import Cost


def _costs():
    # bpjax.cost imports this module (its functions default to DEFAULT_SPEC), so its registry is
    # looked up when a spec is checked, not when this module is imported. (By module path: the
    # package attribute bpjax.cost is the cost function.)
    return importlib.import_module("bpjax.cost")


@dataclasses.dataclass(frozen=True)
class Spec:
    """Activation of the hidden layers, of the output layer, and the cost; all registry names."""

    hidden: str = "sigmoid"
    output: str = "sigmoid"
    cost: str = "quadratic"

    def __post_init__(self) -> None:
        hidden = get_activation(self.hidden)
        get_activation(self.output)
        cost = _costs().get_cost(self.cost)
        if hidden.output_only:
            usable = tuple(n for n in activation_names() if not get_activation(n).output_only)
            raise ValueError(
                f"activation {self.hidden!r} is for the output layer only; hidden layers can "
                f"use {usable}"
            )
        if cost.outputs is not None and self.output not in cost.outputs:
            with_output = tuple(
                c for c in _costs().cost_names() if _accepts(_costs().get_cost(c), self.output)
            )
            raise ValueError(
                f"cost {self.cost!r} needs output activation {' or '.join(cost.outputs)}, got "
                f"{self.output!r}; with output {self.output!r} use cost {with_output}"
            )

    @property
    def hidden_activation(self) -> Activation:
        """The hidden layers' ``Activation`` record."""
        return get_activation(self.hidden)

    @property
    def output_activation(self) -> Activation:
        """The output layer's ``Activation`` record."""
        return get_activation(self.output)

    @property
    def cost_function(self) -> Cost:
        """The ``bpjax.cost.Cost`` record."""
        return _costs().get_cost(self.cost)

    def layer_activations(self, n_layers: int) -> tuple[Activation, ...]:
        """The activation of each of ``n_layers`` layers: hidden ones, then the output."""
        return (self.hidden_activation,) * (n_layers - 1) + (self.output_activation,)

    def to_dict(self) -> dict[str, str]:
        """``{"hidden", "output", "cost"}``: JSON-ready; ``Spec.from_dict`` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> Spec:
        """The spec of ``to_dict``'s output; missing keys take the defaults, unknown ones fail."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(
                f"unknown spec keys {sorted(unknown)}; valid keys are {sorted(fields)}"
            )
        return cls(**d)

    def __str__(self) -> str:
        return f"{self.hidden}/{self.output}/{self.cost}"


def _accepts(cost: Cost, output: str) -> bool:
    return cost.outputs is None or output in cost.outputs


def _built_in_default() -> Spec:
    # The default spec, made without its registry check so that bpjax.cost can use it as a
    # default argument while its registry is being built; the names are built in.
    spec = object.__new__(Spec)
    for field in dataclasses.fields(Spec):
        object.__setattr__(spec, field.name, field.default)
    return spec


DEFAULT_SPEC = _built_in_default()


def allowed_specs() -> list[Spec]:
    """Every allowed (hidden, output, cost) combination of the registered names, in
    registration order (user registrations included)."""
    costs = _costs()
    hidden = [n for n in activation_names() if not get_activation(n).output_only]
    return [
        Spec(h, o, c)
        for h, o, c in itertools.product(hidden, activation_names(), costs.cost_names())
        if _accepts(costs.get_cost(c), o)
    ]


def import_plugins(module_names: Iterable[str]) -> None:
    """Import each named module (``"pkg.mod"``), e.g. ones that call ``register_activation`` or
    ``register_cost``; a module that cannot be imported raises a one-line ValueError."""
    for name in module_names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"cannot import module {name!r}: {err}") from None
