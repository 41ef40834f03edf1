"""One example's wish list, made inspectable: the nudges it asks for, route by route.

For one example with target ``y`` the cost C wishes each output activation to move toward its
target: its desired nudge is ``-dC/da^L`` (``2 (y - a^L)`` for the default quadratic cost), up for
the right digit, down for the rest. A neuron j of layer l with desire ``d_j = -dC/da_j`` wants its
weighted input to grow by ``d_j f'(z_j)`` (= ``-delta_j``; f is the layer's activation from the
``spec``, for a softmax output the vjp ``a * (d - a . d)``), and ``z_j = sum_k w_jk a_k + b_j``
grows through three routes:

    route 1, its bias          nudge  -dC/db_j  = d_j f'(z_j)                            BP3
    route 2, its weights       nudge  -dC/dw_jk = d_j f'(z_j) a_k   (Hebbian: in         BP4
                               proportion to the activation each weight comes from)
    route 3, the previous      neuron j asks activation k for  d_j f'(z_j) w_jk; summed
             activations       over the layer's neurons j this is -dC/da_k, the previous   BP2
                               layer's desire, which it passes back in turn.

Everything is computed from the forward pass, the hand backward pass (``bpjax.backprop``) and
the cost's hand-written ``dC/da^L`` (``bpjax.cost``); the tests check it against ``jax.grad``.
Averaged over examples the parameter nudges are the negative gradient (``mean_wish_list``);
how well a mini-batch's average stands for all of them is ``bpjax.gradient_noise``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bpjax.backprop import backprop_trace, mean_layer_grads
from bpjax.checks import check_batch, check_example
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec


class LayerWishes(NamedTuple):
    """One layer's wishes (layer maps n_in -> n_out), for one example or averaged over several."""

    b: jax.Array  # (n_out,) route 1: bias nudges, -dC/db; each neuron's desire through f'
    w: jax.Array  # (n_out, n_in) route 2: weight nudges, -dC/dw = b a_prev^T
    a_prev_by_neuron: jax.Array  # (n_out, n_in) route 3: row j is what neuron j asks of a_prev
    a_prev: jax.Array  # (n_in,) route 3 summed over the rows: -dC/da_prev, the previous desire


class WishList(NamedTuple):
    """All of one example's wishes; a pytree, so vmap, average or ``jax.tree.map`` it."""

    output: jax.Array  # (n_out,) desired nudges of the output activations, -dC/da^L
    layers: tuple[LayerWishes, ...]  # one per layer, first hidden layer first


def _layer_wishes(w: jax.Array, b_nudge: jax.Array, w_nudge: jax.Array) -> LayerWishes:
    # Route 3 is linear in b_nudge with w fixed, so the same formula serves one example and a mean.
    return LayerWishes(
        b=b_nudge,
        w=w_nudge,
        a_prev_by_neuron=b_nudge[:, None] * w,
        a_prev=w.T @ b_nudge,
    )


def _output_grad(spec: Spec):
    grad = spec.cost_function.output_grad
    if grad is None:
        raise ValueError(
            f"cost {spec.cost!r} has no hand-written dC/da^L, which the wish list needs; "
            "register it with output_grad="
        )
    return grad


def wish_list(params: Params, x: jax.Array, y: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> WishList:
    """The wish list of one example ``x`` (n_in,) with one-hot target ``y`` (n_out,).

    Its parameter nudges are exactly ``-backprop(params, x, y, spec=spec)``; see
    ``parameter_nudges``.
    """
    check_example(params, x, y)
    output_grad = _output_grad(spec)
    zs, activations, deltas = backprop_trace(params, x, y, spec=spec)
    layers = tuple(
        _layer_wishes(layer["w"], -delta, -jnp.outer(delta, a_prev))
        for layer, delta, a_prev in zip(params, deltas, activations[:-1], strict=True)
    )
    return WishList(output=-output_grad(zs[-1], activations[-1], y), layers=layers)


def mean_wish_list(
    params: Params, xs: jax.Array, ys: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> WishList:
    """The average of ``wish_list`` over a batch ``xs`` (B, n_in), ``ys`` (B, n_out).

    Never materialises B per-example (n_out, n_in) matrices: the mean weight nudge is one matrix
    product ``-delta^T a / B`` a layer and route 3 is linear in the bias nudges, so the per-example
    arrays held are vectors no wider than the input ``xs`` itself.
    """
    check_batch(params, xs, ys)
    output_grad = _output_grad(spec)
    trace = lambda p, x, y: backprop_trace(p, x, y, spec=spec)  # noqa: E731
    zs, activations, deltas = jax.vmap(trace, in_axes=(None, 0, 0))(params, xs, ys)
    layers = tuple(
        _layer_wishes(layer["w"], -g["b"], -g["w"])
        for layer, g in zip(params, mean_layer_grads(deltas, activations), strict=True)
    )
    output = -jnp.mean(jax.vmap(output_grad)(zs[-1], activations[-1], ys), axis=0)
    return WishList(output=output, layers=layers)


def parameter_nudges(wishes: WishList) -> Params:
    """Routes 1 and 2 as a params pytree ``[{"w", "b"}, ...]``: the negative gradient."""
    return [{"w": layer.w, "b": layer.b} for layer in wishes.layers]


def activation_desires(wishes: WishList) -> list[jax.Array]:
    """``-dC/da^l`` (n_l,) of every layer's neurons, first hidden layer first, output last.

    Layer l's desire is what layer l + 1 asks of it (its summed route 3); the output's is
    ``wishes.output``. Through f' it becomes layer l's bias nudge.
    """
    return [layer.a_prev for layer in wishes.layers[1:]] + [wishes.output]
