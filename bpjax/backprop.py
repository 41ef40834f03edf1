"""The backward pass derived by hand: the chain rule written out layer by layer. No autodiff.

For one example, with ``delta^l = dC/dz^l``, ``a^l = f(z^l)`` and the spec's cost C:

    BP1  delta^L = the cost's output error                   e.g. 2 (a^L - y) * f'(z^L)
    BP2  delta^l = ((w^{l+1})^T delta^{l+1}) * f'(z^l)       propagated backwards
    BP3  dC/db^l = delta^l
    BP4  dC/dw^l = delta^l (a^{l-1})^T                       each weight's nudge is proportional
                                                             to the activation it comes from

BP1 is each cost's own formula (``bpjax.cost``): ``2 (a - y) f'(z)`` for the default quadratic
cost (the 2 because it has no 1/2 factor), ``a - y`` for cross-entropy with sigmoid outputs and
log-likelihood with softmax. ``* f'(z)`` is the activation's hand-written vjp
(``bpjax.activations``); for a softmax output it is ``a * (v - a . v)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bpjax.checks import check_batch, check_example
from bpjax.network import forward_trace
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec


def backprop_trace(
    params: Params, x: jax.Array, y: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
    """``(zs, activations, deltas)`` of one example: ``forward_trace``'s two lists and
    ``backprop_deltas``' errors, from one forward and one backward pass."""
    check_example(params, x, y)
    zs, activations = forward_trace(params, x, spec=spec)
    output = spec.output_activation
    delta = spec.cost_function.output_delta(zs[-1], activations[-1], y, output)  # BP1
    deltas = [delta]
    hidden = spec.hidden_activation
    for layer, z, a in zip(
        reversed(params[1:]), reversed(zs[:-1]), reversed(activations[1:-1]), strict=True
    ):
        delta = hidden.vjp(z, a, layer["w"].T @ delta)  # BP2
        deltas.append(delta)
    return zs, activations, deltas[::-1]


def backprop_deltas(
    params: Params, x: jax.Array, y: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> tuple[list[jax.Array], list[jax.Array]]:
    """The errors ``delta^l`` (n_l,) of every layer, and the activations, for one example.

    Returns ``(activations, deltas)``: ``activations`` as in ``forward_trace`` (L + 1 entries,
    input first), ``deltas[l]`` = dC/dz of layer l (L entries, first hidden layer first).
    """
    _, activations, deltas = backprop_trace(params, x, y, spec=spec)
    return activations, deltas


def backprop(params: Params, x: jax.Array, y: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> Params:
    """Gradient of ``example_cost`` for one example, by BP1-BP4; same pytree structure as params.

    ``x`` (n_in,), ``y`` one-hot (n_out,). Layer l's entry is
    ``{"w": (n_out, n_in), "b": (n_out,)}``.
    """
    activations, deltas = backprop_deltas(params, x, y, spec=spec)
    return [
        {"w": jnp.outer(delta, a_prev), "b": delta}  # BP4, BP3
        for delta, a_prev in zip(deltas, activations[:-1], strict=True)
    ]


def backprop_cost_and_mean(
    params: Params, xs: jax.Array, ys: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> tuple[jax.Array, Params]:
    """The mean cost and the mean of ``backprop`` over a batch, from one forward/backward pass.

    ``xs`` (B, n_in), ``ys`` (B, n_out). Each example's deltas come from ``vmap(backprop_deltas)``;
    their mean gradient is ``mean_layer_grads``. Equal to the mean of ``backprop``.
    """
    check_batch(params, xs, ys)
    trace = jax.vmap(functools.partial(backprop_trace, spec=spec), in_axes=(None, 0, 0))
    zs, activations, deltas = trace(params, xs, ys)
    mean_cost = jnp.mean(jax.vmap(spec.cost_function.cost)(zs[-1], activations[-1], ys))
    return mean_cost, mean_layer_grads(deltas, activations)


def mean_layer_grads(deltas: list[jax.Array], activations: list[jax.Array]) -> Params:
    """BP3 and BP4 averaged over a batch: ``{"w": delta^T a_prev / B, "b": mean delta}`` a layer.

    ``deltas[l]`` (B, n_l) and ``activations`` (L + 1 entries, (B, n_l), input first) as
    ``vmap(backprop_trace)`` returns them. The mean of the B outer products ``delta_i a_i^T`` is
    one matrix product, which XLA runs as a GEMM instead of B rank-1 updates.
    """
    n = deltas[0].shape[0]
    return [
        {"w": (delta.T @ a_prev) / n, "b": jnp.mean(delta, axis=0)}  # BP4, BP3
        for delta, a_prev in zip(deltas, activations[:-1], strict=True)
    ]


def backprop_mean(
    params: Params, xs: jax.Array, ys: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> Params:
    """Mean over a batch ``xs`` (B, n_in), ``ys`` (B, n_out) of ``backprop``; one GEMM a layer."""
    return backprop_cost_and_mean(params, xs, ys, spec=spec)[1]
