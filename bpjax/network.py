"""The forward pass: ``a^l = f(z^l)``, ``z^l = w^l a^{l-1} + b^l``, one example at a time.

``f`` is the spec's hidden activation for every layer but the last, its output activation for
the last (``bpjax.Spec``; sigmoid for both by default). Functions here take one example ``x`` of
shape (n_in,), as in the math; ``jax.vmap`` batches them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bpjax.activations import sigmoid, sigmoid_prime
from bpjax.checks import check_batch, check_example
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec

__all__ = ["forward", "forward_batch", "forward_trace", "predict", "sigmoid", "sigmoid_prime"]

# Any model in place of bpjax's network (a Flax module's apply, say): (params, xs (B, n_in)) -> z^L.
ApplyFn = Callable[[Any, jax.Array], jax.Array]


def forward_trace(
    params: Params, x: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Every layer's weighted inputs and activations for one example ``x`` (n_in,).

    Returns ``(zs, activations)``: ``zs[l]`` has shape (n_{l+1},) for each of the L layers, and
    ``activations`` has L + 1 entries, ``activations[0] = x`` and ``activations[-1]`` the output.
    """
    check_example(params, x)
    a = x
    zs, activations = [], [x]
    for layer, act in zip(params, spec.layer_activations(len(params)), strict=True):
        z = layer["w"] @ a + layer["b"]
        a = act.f(z)
        zs.append(z)
        activations.append(a)
    return zs, activations


def forward(params: Params, x: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> jax.Array:
    """Output activations ``a^L`` (n_out,) for one example ``x`` (n_in,)."""
    return forward_trace(params, x, spec=spec)[1][-1]


def forward_batch(params: Params, xs: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> jax.Array:
    """Output activations (B, n_out) for a batch ``xs`` (B, n_in): ``forward`` under ``vmap``."""
    check_batch(params, xs)
    return jax.vmap(functools.partial(forward, spec=spec), in_axes=(None, 0))(params, xs)


def output_layer_batch(
    params: Params, xs: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> tuple[jax.Array, jax.Array]:
    """The output layer's weighted inputs ``z^L`` and activations ``a^L``, both (B, n_out)."""
    check_batch(params, xs)
    zs, activations = jax.vmap(functools.partial(forward_trace, spec=spec), in_axes=(None, 0))(
        params, xs
    )
    return zs[-1], activations[-1]


def predict(params: Params, xs: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> jax.Array:
    """Predicted digit (B,) int32: the index of the most active output neuron."""
    return jnp.argmax(forward_batch(params, xs, spec=spec), axis=-1).astype(jnp.int32)


def check_apply_fn(apply_fn: ApplyFn | None, spec: Spec) -> None:
    """An ``apply_fn`` that carries the spec it was built for (``bpjax.flax_mlp.make_apply_fn``
    sets ``apply_fn.spec``) must be used with that same spec."""
    built_for = getattr(apply_fn, "spec", None)
    if built_for is not None and built_for != spec:
        raise ValueError(
            f"apply_fn was built for spec {built_for}, but spec is {spec}; pass the same"
        )


def model_outputs(params, xs: jax.Array, apply_fn: ApplyFn | None, spec: Spec):
    """The output layer's ``(z^L, a^L)``, both (B, n_out), of bpjax's network or of ``apply_fn``.

    ``apply_fn`` returns z^L; the spec's output activation gives a^L, so costs with a log
    (cross-entropy, log-likelihood) can be computed stably from z^L."""
    if apply_fn is None:
        return output_layer_batch(params, xs, spec=spec)
    zs = apply_fn(params, xs)
    return zs, spec.output_activation.f(zs)
