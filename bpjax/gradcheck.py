"""A gradient check that can fail: the hand backward pass vs ``jax.grad`` vs finite differences.

``check_gradients(spec, sizes, key=...)`` builds a random network and mini-batch in float64
(inside ``jax.enable_x64``) and compares, layer by layer, the mean gradient of the hand
backward pass (``backprop_mean``: the spec's hand-written BP1 and activation derivatives) with

- ``jax.grad`` of the mean cost: agreement to ``tol`` (1e-10) relative, since both are exact
  and differ only by rounding; a wrong derivative shows up as an O(1) error;
- central finite differences ``(C(theta + eps) - C(theta - eps)) / 2 eps`` of every parameter:
  agreement to ``fd_tol`` (1e-6) relative, the truncation (~eps^2) plus rounding (~1e-16 / eps)
  error of the difference quotient with ``eps = 1e-5``.

Relative errors are ``max |hand - reference| / max |reference|`` over a layer's w and b (the
absolute error when the reference is all zero); for finite differences the denominator is the
largest entry of the whole gradient, as a layer with a ~0 gradient (dead relus) has only
rounding noise to compare. Meant for small networks: finite differences
evaluate the cost twice per parameter. ``check_all`` runs every allowed registered combination
(``bpjax.spec.allowed_specs``) on random architectures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bpjax.backprop import backprop_mean
from bpjax.cost import cost
from bpjax.spec import DEFAULT_SPEC, Spec, allowed_specs

TOL = 1e-10  # hand vs jax.grad, relative
FD_TOL = 1e-6  # hand vs central differences, relative
FD_EPS = 1e-5


class GradCheck(NamedTuple):
    """One check's outcome; the errors are the worst relative errors over the layers."""

    spec: Spec
    sizes: tuple[int, ...]
    batch_size: int
    hand_vs_autodiff: float
    hand_vs_fd: float
    per_layer: tuple[tuple[float, float], ...]  # (hand vs autodiff, hand vs FD), layer 1 first
    tol: float
    fd_tol: float
    passed: bool  # hand_vs_autodiff <= tol and hand_vs_fd <= fd_tol (NaN fails)


def _rel_err(got, ref, scale=None) -> float:
    diff = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref, strict=True))
    if scale is None:
        scale = max(float(np.max(np.abs(r))) for r in ref)
    return diff / scale if scale > 0 else diff


def random_problem(key: jax.Array, sizes: Sequence[int], batch_size: int):
    """float64 params with standard-normal weights and biases, inputs (B, n_in) in [0, 1) and
    one-hot targets (B, n_out), as numpy arrays drawn from ``key``. (numpy, not jax.random:
    eager jax.random compiles its kernels anew for every shape, which would dominate a check.)"""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    params = [
        {"w": rng.standard_normal((n_out, n_in)), "b": rng.standard_normal(n_out)}
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    xs = rng.uniform(size=(batch_size, sizes[0]))
    ys = np.eye(sizes[-1])[rng.integers(0, sizes[-1], size=batch_size)]
    return params, xs, ys


def _gradients(params, xs, ys, spec: Spec, eps: float):
    """(hand, jax.grad, central differences) of the mean cost; the last two never use BP1/BP2."""
    hand = backprop_mean(params, xs, ys, spec=spec)
    auto = jax.grad(lambda p: cost(p, xs, ys, spec=spec))(params)
    flat, unravel = ravel_pytree(params)
    steps = eps * jnp.eye(flat.size, dtype=flat.dtype)
    cost_at = jax.vmap(lambda d: cost(unravel(flat + d), xs, ys, spec=spec))
    numeric = unravel((cost_at(steps) - cost_at(-steps)) / (2 * eps))
    return hand, auto, numeric


_GRADIENTS = jax.jit(_gradients, static_argnames=("spec", "eps"))


def check_gradients(
    spec: Spec = DEFAULT_SPEC,
    sizes: Sequence[int] = (4, 5, 3),
    *,
    key: jax.Array,
    batch_size: int = 3,
    tol: float = TOL,
    fd_tol: float = FD_TOL,
    fd_eps: float = FD_EPS,
) -> GradCheck:
    """Compare the hand backward pass of ``spec`` with ``jax.grad`` and finite differences on a
    random float64 network of layer sizes ``sizes`` and a random mini-batch of ``batch_size``
    inputs with one-hot targets (``random_problem``), drawn from ``key``. Returns a
    ``GradCheck``."""
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a bpjax.Spec, got {spec!r}")
    sizes = tuple(int(n) for n in sizes)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with jax.enable_x64(True):
        params, xs, ys = random_problem(key, sizes, batch_size)
        hand, auto, numeric = jax.device_get(_GRADIENTS(params, xs, ys, spec, float(fd_eps)))
    # FD errors are relative to the largest FD entry of the whole network: a layer whose
    # gradient is ~0 (dead relus) would otherwise divide rounding noise by rounding noise.
    fd_scale = max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(numeric))
    per_layer = tuple(
        (
            _rel_err((h["w"], h["b"]), (a["w"], a["b"])),
            _rel_err((h["w"], h["b"]), (n["w"], n["b"]), fd_scale),
        )
        for h, a, n in zip(hand, auto, numeric, strict=True)
    )
    worst_auto = max(e[0] for e in per_layer)
    worst_fd = max(e[1] for e in per_layer)
    passed = bool(worst_auto <= tol and worst_fd <= fd_tol)  # False for NaN
    return GradCheck(spec, sizes, batch_size, worst_auto, worst_fd, per_layer, tol, fd_tol, passed)


def random_sizes(key: jax.Array, max_layers: int = 4, max_width: int = 6) -> tuple[int, ...]:
    """Random layer sizes: 1 to ``max_layers`` layers, widths 1 to ``max_width`` (2 or more at
    the output, so a softmax has something to normalise)."""
    k_depth, k_width = jax.random.split(key)
    n_layers = int(jax.random.randint(k_depth, (), 1, max_layers + 1))
    widths = np.array(jax.random.randint(k_width, (n_layers + 1,), 1, max_width + 1))
    widths[-1] = max(widths[-1], 2)
    return tuple(int(w) for w in widths)


def check_all(
    specs: Sequence[Spec] | None = None,
    *,
    key: jax.Array,
    architectures: int = 2,
    sizes: Sequence[int] | None = None,
    **kwargs,
) -> list[GradCheck]:
    """``check_gradients`` for every spec of ``specs`` (default: every allowed combination of
    the registered names), each on ``architectures`` random architectures (``random_sizes``) or
    on ``sizes`` if given; ``kwargs`` go to ``check_gradients``. One report per check."""
    specs = allowed_specs() if specs is None else list(specs)
    reports = []
    for i, spec in enumerate(specs):
        spec_key = jax.random.fold_in(key, i)
        for j in range(1 if sizes is not None else architectures):
            k_sizes, k_check = jax.random.split(jax.random.fold_in(spec_key, j))
            arch = tuple(sizes) if sizes is not None else random_sizes(k_sizes)
            reports.append(check_gradients(spec, arch, key=k_check, **kwargs))
    return reports
