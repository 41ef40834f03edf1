"""Per-example gradients ("wish lists") and their mini-batch average, by autodiff or by hand.

``method="autodiff"`` differentiates ``example_cost`` with ``jax.grad``; ``method="backprop"`` uses
the hand-derived backward pass of ``bpjax.backprop``. Both give the same numbers, for any
``spec`` (``bpjax.Spec``: the activations and the cost).
"""

from __future__ import annotations

import jax

from bpjax.backprop import backprop, backprop_mean
from bpjax.checks import check_batch
from bpjax.cost import cost, example_cost
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec

METHODS = ("autodiff", "backprop")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown gradient method {method!r}; choose one of {METHODS}")


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
