"""Every way to a gradient, and the one registry of them.

One example's gradient ("wish list"), by ``EXAMPLE_METHODS``: ``"autodiff"`` differentiates
``example_cost`` with ``jax.grad``; ``"backprop"`` is the hand-derived backward pass of
``bpjax.backprop``. ``per_example_grads`` stacks them over a batch with ``vmap``.

A mini-batch's mean cost and mean gradient, by any name in ``METHODS`` (``make_grad_fn``):

- ``"autodiff"``: ``jax.grad`` of the mean cost of ``vmap``-ed examples (equal, by linearity,
  to the mean of the per-example gradients); the only one that takes any model's ``apply_fn``.
- ``"backprop"``: the hand backward pass, ``vmap``-ed, each layer's mean outer product one GEMM
  (``bpjax.backprop.mean_layer_grads``).
- ``"vmap_grad"`` / ``"vmap_backprop"``: the mean of the *materialised* per-example gradients
  (B, n_out, n_in); XLA turns each outer product into a broadcast multiply and the mean into a
  reduction, never a matrix product, so they are slow: they are the wish lists, averaged.
- ``"vmap_grad_factored"``: the same average, exactly, at about the batched gradient's cost: a
  dense layer's ``dC_i/dw = (dC_i/db) a_i^T``, so each example's bias gradient from
  ``vmap(jax.grad)`` (its deltas) gives the mean weight gradient as one GEMM.

All of them give the same numbers up to float rounding, for any ``spec`` (``bpjax.Spec``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bpjax.backprop import backprop, backprop_cost_and_mean, backprop_mean, mean_layer_grads
from bpjax.checks import check_batch
from bpjax.cost import cost, example_cost, mean_output_cost
from bpjax.network import ApplyFn, check_apply_fn, forward_trace, model_outputs
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec

# (params, xs (B, n_in), ys (B, n_out)) -> (mean cost, mean gradient)
GradFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]]

EXAMPLE_METHODS = ("autodiff", "backprop")


def _check_method(method: str, methods=EXAMPLE_METHODS) -> None:
    if method not in methods:
        raise ValueError(f"unknown gradient method {method!r}; choose one of {tuple(methods)}")


def example_grad(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    method: str = "autodiff",
    *,
    spec: Spec = DEFAULT_SPEC,
) -> Params:
    """One example's gradient of ``example_cost``, with the structure of ``params``."""
    _check_method(method)
    if method == "autodiff":
        return jax.grad(lambda p: example_cost(p, x, y, spec=spec))(params)
    return backprop(params, x, y, spec=spec)


def per_example_grads(
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    method: str = "autodiff",
    *,
    spec: Spec = DEFAULT_SPEC,
) -> Params:
    """Every example's gradient, stacked: each leaf gets a leading batch axis of size B.

    ``xs`` (B, n_in), ``ys`` (B, n_out); layer l's entry is
    ``{"w": (B, n_out, n_in), "b": (B, n_out)}``.
    """
    _check_method(method)
    check_batch(params, xs, ys)
    one = lambda p, x, y: example_grad(p, x, y, method, spec=spec)  # noqa: E731
    return jax.vmap(one, in_axes=(None, 0, 0))(params, xs, ys)


def mean_grad(
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    method: str = "autodiff",
    *,
    spec: Spec = DEFAULT_SPEC,
) -> Params:
    """The mini-batch's averaged wish list: the mean over examples of their gradients.

    Equal to ``jax.tree.map(lambda g: g.mean(0), per_example_grads(...))`` but never materialises
    the (B, n_out, n_in) per-example weight gradients: by linearity the mean of the gradients is
    the gradient of the mean cost (autodiff), or one ``delta^T a / B`` product per layer (backprop),
    and both compile to matrix products.
    """
    _check_method(method)
    check_batch(params, xs, ys)
    if method == "autodiff":
        return jax.grad(lambda p: cost(p, xs, ys, spec=spec))(params)
    return backprop_mean(params, xs, ys, spec=spec)


# --- A mini-batch's (mean cost, mean gradient): the registry. -----------------------------------


def _autodiff(params, xs, ys, *, spec: Spec, apply_fn: ApplyFn | None = None):
    def mean_cost(p):
        return mean_output_cost(*model_outputs(p, xs, apply_fn, spec), ys, spec=spec)

    return jax.value_and_grad(mean_cost)(params)


def _backprop(params, xs, ys, *, spec: Spec):
    return backprop_cost_and_mean(params, xs, ys, spec=spec)


def _materialised_mean(example_method: str):
    """Mean cost and the mean over the materialised per-example gradients of ``example_method``."""

    def grad_fn(params, xs, ys, *, spec: Spec):
        grads = per_example_grads(params, xs, ys, example_method, spec=spec)
        return cost(params, xs, ys, spec=spec), jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)

    return grad_fn


def vmap_grad_factored(params, xs: jax.Array, ys: jax.Array, *, spec: Spec = DEFAULT_SPEC):
    """Mean cost and the mean of the per-example ``jax.grad`` wish lists, with GEMMs.

    ``xs`` (B, n_in), ``ys`` (B, n_out). Each example's gradient of ``example_cost`` w.r.t. a
    layer's bias is its delta (B, n_out) from ``vmap(jax.grad)``; its weight gradient is
    ``delta a_prev^T`` (z = w a_prev + b), whose mean is ``mean_layer_grads``.
    Equal to averaging ``per_example_grads(..., "autodiff")`` without forming (B, n_out, n_in).
    """

    def cost_of_biases(biases, x, y):
        layers = [{"w": p["w"], "b": b} for p, b in zip(params, biases, strict=True)]
        return example_cost(layers, x, y, spec=spec)

    biases = [layer["b"] for layer in params]
    per_example = jax.vmap(jax.value_and_grad(cost_of_biases), in_axes=(None, 0, 0))
    costs, deltas = per_example(biases, xs, ys)
    # The same forward pass as inside the gradient; XLA computes it once (CSE).
    trace = lambda p, x: forward_trace(p, x, spec=spec)  # noqa: E731
    _, activations = jax.vmap(trace, in_axes=(None, 0))(params, xs)
    return jnp.mean(costs), mean_layer_grads(deltas, activations)


# name -> (params, xs, ys, *, spec) -> (mean cost, mean gradient). Only "autodiff" takes apply_fn.
METHODS: dict[str, Callable[..., tuple[jax.Array, Any]]] = {
    "autodiff": _autodiff,
    "backprop": _backprop,
    "vmap_grad": _materialised_mean("autodiff"),
    "vmap_backprop": _materialised_mean("backprop"),
    "vmap_grad_factored": vmap_grad_factored,
}


def make_grad_fn(
    method: str = "autodiff", apply_fn: ApplyFn | None = None, *, spec: Spec = DEFAULT_SPEC
) -> GradFn:
    """``(params, xs, ys) -> (mean cost, mean gradient)`` of ``spec``'s cost over a batch.

    ``method``: a name in ``METHODS`` (see the module docstring for what each costs). Only
    ``"autodiff"`` works with ``apply_fn`` (any model returning z^L; see ``bpjax.network``).
    """
    _check_method(method, METHODS)
    if apply_fn is not None and method != "autodiff":
        raise ValueError(f"method={method!r} is bpjax's own network; use 'autodiff' with apply_fn")
    check_apply_fn(apply_fn, spec)
    if apply_fn is not None:
        return functools.partial(_autodiff, spec=spec, apply_fn=apply_fn)
    return functools.partial(METHODS[method], spec=spec)
