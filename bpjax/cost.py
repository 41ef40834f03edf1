"""Costs: each one's per-example value and its output error BP1 ``delta^L``, derived by hand.

A ``Cost`` is Nielsen's network2 cost object: ``cost(z, a, y)`` is one example's cost from the
output layer's weighted input ``z^L`` (n_out,), activation ``a^L`` and target ``y``, and
``output_delta(z, a, y, output_activation)`` is ``delta^L = dC/dz^L`` (BP1), a formula, not
autodiff. ``output_grad(z, a, y)`` = ``dC/da^L`` is optional (the wish list needs it).

Built in:

==================  =======================================  ===============================
``quadratic``       ``sum_j (a_j - y_j)^2`` (no 1/2 factor)   ``delta = 2 (a - y) f'(z)``
``quadratic_half``  ``1/2 ||a - y||^2`` (Nielsen's book)      ``delta = (a - y) f'(z)``
``cross_entropy``   ``-sum_j y ln a + (1 - y) ln(1 - a)``     ``delta = a - y`` (sigmoid out)
``log_likelihood``  ``-sum_j y_j ln a_j``                     ``delta = a - y`` (softmax out)
==================  =======================================  ===============================

(``f'(z)`` means the output activation's vjp, so the quadratic costs work with any output,
softmax included.) With ``quadratic`` the gradients are twice those of Nielsen's
``quadratic_half``, so his learning rates are meant for ``quadratic_half``. The logs are taken of
``z``, never of ``a``: ``ln sigma(z) = -softplus(-z)`` and ``ln softmax(z) = z - logsumexp(z)``, so
a saturated output gives a finite cost. ``log_likelihood``'s ``a - y`` assumes ``sum_j y_j = 1``
(one-hot targets). The cost of a data set is the mean of ``C_x`` over its examples.

The registry is open: ``register_cost(name, cost, output_delta, output_grad=..., outputs=...)``
adds one from user code; ``outputs`` names the output activations it accepts (None: any), and
``bpjax.Spec`` refuses the others. Names are registered once (re-registering is refused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bpjax.activations import Activation
from bpjax.checks import check_batch, check_example
from bpjax.network import forward_batch, forward_trace
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec

CostFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (z, a, y) -> scalar
DeltaFn = Callable[[jax.Array, jax.Array, jax.Array, Activation], jax.Array]  # -> delta^L


class Cost(NamedTuple):
    """One registered cost; every function takes one example's (n_out,) vectors."""

    name: str
    cost: CostFn  # (z, a, y) -> C_x, a scalar
    output_delta: DeltaFn  # (z, a, y, output activation) -> delta^L = dC/dz^L (n_out,), BP1
    output_grad: CostFn | None  # (z, a, y) -> dC/da^L (n_out,); None if not derived
    outputs: tuple[str, ...] | None  # output activations it accepts; None = any


def _times(y: jax.Array, t: jax.Array) -> jax.Array:
    # y * t with 0 * inf taken as 0: a target of 0 ignores an infinite factor.
    return jnp.where(y == 0, jnp.zeros_like(t), y * t)


def quadratic(z, a, y):
    """``sum_j (a_j - y_j)^2``."""
    return jnp.sum((a - y) ** 2)


def quadratic_delta(z, a, y, output: Activation):
    """BP1: ``2 (a - y) * f'(z)``."""
    return output.vjp(z, a, 2 * (a - y))


def quadratic_grad(z, a, y):
    """``dC/da = 2 (a - y)``."""
    return 2 * (a - y)


def quadratic_half(z, a, y):
    """``1/2 sum_j (a_j - y_j)^2``."""
    return 0.5 * jnp.sum((a - y) ** 2)


def quadratic_half_delta(z, a, y, output: Activation):
    """BP1: ``(a - y) * f'(z)``."""
    return output.vjp(z, a, a - y)


def quadratic_half_grad(z, a, y):
    """``dC/da = a - y``."""
    return a - y


def cross_entropy(z, a, y):
    """``-sum_j [y ln a + (1 - y) ln(1 - a)]`` with ``a = sigma(z)``, as
    ``sum_j [y softplus(-z) + (1 - y) softplus(z)]``: finite for any z."""
    return jnp.sum(y * jax.nn.softplus(-z) + (1 - y) * jax.nn.softplus(z))


def cross_entropy_delta(z, a, y, output: Activation):
    """BP1 with a sigmoid output: sigma' cancels the cost's denominators, ``delta = a - y``."""
    return a - y


def cross_entropy_grad(z, a, y):
    """``dC/da = (1 - y) / (1 - a) - y / a``, with ``1/a = 1 + e^{-z}``, ``1/(1-a) = 1 + e^z``."""
    return _times(1 - y, 1 + jnp.exp(z)) - _times(y, 1 + jnp.exp(-z))


def log_likelihood(z, a, y):
    """``-sum_j y_j ln a_j`` with ``a = softmax(z)``, as ``-sum_j y_j (z_j - logsumexp(z))``."""
    return -jnp.sum(y * jax.nn.log_softmax(z, axis=-1))


def log_likelihood_delta(z, a, y, output: Activation):
    """BP1 with a softmax output and ``sum_j y_j = 1``: ``delta = a - y``."""
    return a - y


def log_likelihood_grad(z, a, y):
    """``dC/da_j = -y_j / a_j``, with ``1/a_j = e^{logsumexp(z) - z_j}``."""
    lse = jax.scipy.special.logsumexp(z, axis=-1, keepdims=True)
    return -_times(y, jnp.exp(lse - z))


_REGISTRY: dict[str, Cost] = {}


def register_cost(
    name: str,
    cost: CostFn,
    output_delta: DeltaFn,
    *,
    output_grad: CostFn | None = None,
    outputs: tuple[str, ...] | None = None,
) -> Cost:
    """Add cost ``name`` to the registry; returns the record.

    ``cost(z, a, y)`` -> scalar and ``output_delta(z, a, y, output_activation)`` -> ``delta^L``
    (n_out,) for one example (z, a, y all (n_out,); ``output_activation`` an
    ``bpjax.activations.Activation``, whose ``vjp`` gives the ``* f'(z)`` of a generic BP1);
    ``output_grad(z, a, y)`` -> ``dC/da^L`` if derived (the wish list needs it); ``outputs``
    the output activation names it accepts (None: any). ValueError if ``name`` is taken.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"cost name must be an identifier-like string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"cost {name!r} is already registered; choose another name")
    for label, fn in (("cost", cost), ("output_delta", output_delta)):
        if not callable(fn):
            raise ValueError(f"cost {name!r}: {label} must be callable")
    if output_grad is not None and not callable(output_grad):
        raise ValueError(f"cost {name!r}: output_grad must be callable or None")
    if outputs is not None:
        if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs):
            raise ValueError(f"cost {name!r}: outputs must be a tuple of activation names")
        outputs = tuple(outputs)
    record = Cost(name, cost, output_delta, output_grad, outputs)
    _REGISTRY[name] = record
    return record


def cost_names() -> tuple[str, ...]:
    """Every registered cost's name, in registration order."""
    return tuple(_REGISTRY)


def get_cost(name: str) -> Cost:
    """The record of cost ``name``; ValueError listing the valid names if unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cost {name!r}; choose one of {cost_names()}") from None


register_cost("quadratic", quadratic, quadratic_delta, output_grad=quadratic_grad)
register_cost(
    "quadratic_half", quadratic_half, quadratic_half_delta, output_grad=quadratic_half_grad
)
register_cost(
    "cross_entropy",
    cross_entropy,
    cross_entropy_delta,
    output_grad=cross_entropy_grad,
    outputs=("sigmoid",),
)
register_cost(
    "log_likelihood",
    log_likelihood,
    log_likelihood_delta,
    output_grad=log_likelihood_grad,
    outputs=("softmax",),
)


# --- Costs of a network's outputs. -------------------------------------------------------------


def one_hot(labels: jax.Array, n_classes: int = 10, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Labels (...,) int -> one-hot targets (..., n_classes)."""
    return jax.nn.one_hot(labels, n_classes, dtype=dtype)


def squared_error(outputs: jax.Array, ys: jax.Array) -> jax.Array:
    """Mean over the batch of ``sum_j (a_j - y_j)^2``: outputs and targets both (B, n_out)."""
    if outputs.shape != ys.shape:
        raise ValueError(f"outputs {outputs.shape} and targets {ys.shape} must have the same shape")
    return jnp.mean(jnp.sum((outputs - ys) ** 2, axis=-1))


def mean_output_cost(zs: jax.Array, outputs: jax.Array, ys: jax.Array, *, spec: Spec) -> jax.Array:
    """Mean over the batch of ``spec``'s cost, from the output layer's weighted inputs ``zs``,
    activations ``outputs`` and targets ``ys``, all (B, n_out)."""
    if outputs.shape != ys.shape or zs.shape != ys.shape:
        raise ValueError(
            f"outputs {outputs.shape}, weighted inputs {zs.shape} and targets {ys.shape} "
            "must have the same shape"
        )
    return jnp.mean(jax.vmap(spec.cost_function.cost)(zs, outputs, ys))


def example_cost(params: Params, x: jax.Array, y: jax.Array, *, spec: Spec = DEFAULT_SPEC):
    """``C_x`` of one example ``x`` (n_in,) with one-hot target ``y`` (n_out,); a scalar.

    ``spec``: a ``bpjax.Spec``; the default is sigmoid and ``sum_j (a^L_j - y_j)^2``."""

    check_example(params, x, y)
    zs, activations = forward_trace(params, x, spec=spec)
    return spec.cost_function.cost(zs[-1], activations[-1], y)


def cost(params: Params, xs: jax.Array, ys: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> jax.Array:
    """Mean of ``example_cost`` over a batch ``xs`` (B, n_in), ``ys`` (B, n_out); a scalar."""
    check_batch(params, xs, ys)
    per_example = jax.vmap(lambda x, y: example_cost(params, x, y, spec=spec))
    return jnp.mean(per_example(xs, ys))


def accuracy(
    params: Params, xs: jax.Array, labels: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> jax.Array:
    """Fraction of ``xs`` (B, n_in) whose most active output neuron is ``labels`` (B,)."""
    check_batch(params, xs)
    if labels.shape != xs.shape[:1]:
        raise ValueError(f"labels must have shape ({xs.shape[0]},), got {labels.shape}")
    return jnp.mean(jnp.argmax(forward_batch(params, xs, spec=spec), axis=-1) == labels)
