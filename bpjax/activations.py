"""Activation functions ``a = f(z)``, each with its derivative written by hand (never autodiff).

An ``Activation`` holds the function and the vector-Jacobian product the backward pass needs:
``vjp(z, a, v) = v^T da/dz``, which BP1 and BP2 multiply into the error. For an elementwise
activation it is ``v * f'(z)``; for ``softmax`` it is ``a * (v - a . v)`` (its Jacobian is
``diag(a) - a a^T``), and softmax is usable only as the output layer.

The registry is open: ``register_activation(name, f, f_prime)`` adds one from user code, and the
name then works in ``bpjax.Spec`` and ``bpjax.check_gradients``. The contract:

- ``f(z)`` maps weighted inputs (..., n) to activations (..., n), acting on the last axis and
  broadcasting over leading ones (an elementwise jnp expression does);
- ``f_prime(z)`` (..., n) is ``df/dz`` elementwise, derived by hand; ``check_gradients`` is what
  tells you whether the derivation is right;
- or, for an activation that mixes a layer's neurons, ``vjp(z, a, v)`` (..., n) instead of
  ``f_prime``, with ``output_only=True`` when it only makes sense at the output;
- names are registered once: re-registering is refused, since compiled functions are cached on
  a ``Spec``'s names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

ArrayFn = Callable[[jax.Array], jax.Array]
VjpFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (z, a, v) -> v^T da/dz


class Activation(NamedTuple):
    """One registered activation: ``f``, its hand-written derivative, and where it may be used."""

    name: str
    f: ArrayFn  # z (..., n) -> a (..., n)
    f_prime: ArrayFn | None  # elementwise f'(z); None when f mixes neurons (softmax)
    vjp: VjpFn  # (z, a, v) -> v^T da/dz (..., n): BP1/BP2's "* sigma'(z)"
    output_only: bool  # True: refused as a hidden layer's activation


def sigmoid(z: jax.Array) -> jax.Array:
    """1 / (1 + e^{-z}), computed without overflow for any z (``jax.nn.sigmoid`` is stable)."""
    return jax.nn.sigmoid(z)


def sigmoid_prime(z: jax.Array) -> jax.Array:
    """sigma'(z) = sigma(z) (1 - sigma(z)); finite (possibly 0) for every z."""
    s = sigmoid(z)
    return s * (1 - s)


def tanh_prime(z: jax.Array) -> jax.Array:
    """tanh'(z) = 1 - tanh(z)^2."""
    t = jnp.tanh(z)
    return 1 - t * t


def relu(z: jax.Array) -> jax.Array:
    """max(z, 0)."""
    return jax.nn.relu(z)


def relu_prime(z: jax.Array) -> jax.Array:
    """1 where z > 0, else 0 (the subgradient 0 at z = 0, as ``jax.nn.relu`` uses)."""
    return (z > 0).astype(z.dtype)


def identity(z: jax.Array) -> jax.Array:
    """z itself (a linear layer)."""
    return z


def identity_prime(z: jax.Array) -> jax.Array:
    """1 everywhere."""
    return jnp.ones_like(z)


def softmax(z: jax.Array) -> jax.Array:
    """e^{z_j} / sum_k e^{z_k} over the last axis, computed stably (max subtracted)."""
    return jax.nn.softmax(z, axis=-1)


def softmax_vjp(z: jax.Array, a: jax.Array, v: jax.Array) -> jax.Array:
    """``v^T da/dz = a * (v - a . v)``: the Jacobian of softmax is ``diag(a) - a a^T``."""
    return a * (v - jnp.sum(a * v, axis=-1, keepdims=True))


def elementwise_vjp(f_prime: ArrayFn) -> VjpFn:
    """The vjp of an elementwise activation: ``v * f'(z)``."""
    return lambda z, a, v: v * f_prime(z)


_REGISTRY: dict[str, Activation] = {}


def register_activation(
    name: str,
    f: ArrayFn,
    f_prime: ArrayFn | None = None,
    *,
    vjp: VjpFn | None = None,
    output_only: bool = False,
) -> Activation:
    """Add activation ``name`` to the registry (see the module docstring for the contract).

    Give ``f_prime`` (elementwise) or ``vjp`` (mixes neurons), not both. Returns the record.
    Raises ValueError if ``name`` is taken or the arguments do not fit the contract.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"activation name must be an identifier-like string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"activation {name!r} is already registered; choose another name")
    if not callable(f):
        raise ValueError(f"activation {name!r}: f must be callable")
    if (f_prime is None) == (vjp is None):
        raise ValueError(f"activation {name!r}: give exactly one of f_prime (elementwise) or vjp")
    if not callable(f_prime if vjp is None else vjp):
        raise ValueError(f"activation {name!r}: its derivative must be callable")
    record = Activation(
        name=name,
        f=f,
        f_prime=f_prime,
        vjp=vjp if vjp is not None else elementwise_vjp(f_prime),
        output_only=bool(output_only),
    )
    _REGISTRY[name] = record
    return record


def activation_names() -> tuple[str, ...]:
    """Every registered activation's name, in registration order."""
    return tuple(_REGISTRY)


def get_activation(name: str) -> Activation:
    """The record of activation ``name``; ValueError listing the valid names if unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; choose one of {activation_names()}"
        ) from None


register_activation("sigmoid", sigmoid, sigmoid_prime)
register_activation("tanh", jnp.tanh, tanh_prime)
register_activation("relu", relu, relu_prime)
register_activation("identity", identity, identity_prime)
register_activation("softmax", softmax, vjp=softmax_vjp, output_only=True)
