"""The cost surface on a 2-D plane through parameter space, for drawing training trajectories.

The plane is spanned by the top two principal components of the parameter snapshots of one or
more trajectories (Li et al., 2018, "Visualizing the loss landscape of neural nets"). Points off
the plane are drawn at their projection, so the picture is a faithful 2-D shadow, not the path.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


class Plane(NamedTuple):
    origin: jax.Array  # (P,) the mean snapshot
    axes: jax.Array  # (2, P) orthonormal directions
    explained: jax.Array  # (2,) fraction of the snapshots' variance along each axis


def flatten_snapshots(snapshots: list) -> tuple[jax.Array, callable]:
    """Param pytrees -> ``(S, P)`` matrix, and the function turning a (P,) row back into params."""
    rows = [ravel_pytree(p)[0] for p in snapshots]
    _, unravel = ravel_pytree(snapshots[0])
    return jnp.stack(rows), unravel


def pca_plane(points: jax.Array) -> Plane:
    """The plane through the mean of ``points`` (S, P) along their top-2 principal directions."""
    if points.shape[0] < 3:
        raise ValueError(f"need at least 3 snapshots to fit a plane, got {points.shape[0]}")
    origin = points.mean(axis=0)
    _, s, vt = jnp.linalg.svd(points - origin[None, :], full_matrices=False)
    var = s**2
    return Plane(origin, vt[:2], var[:2] / jnp.sum(var))


def project(plane: Plane, points: jax.Array) -> jax.Array:
    """Coordinates (S, 2) of ``points`` (S, P) in the plane."""
    return (points - plane.origin[None, :]) @ plane.axes.T


def cost_on_grid(cost_fn, unravel, plane: Plane, us: jax.Array, vs: jax.Array) -> jax.Array:
    """``cost_fn(params)`` at ``origin + u axes[0] + v axes[1]`` for every (v, u).

    Shape (len(vs), len(us)).

    Evaluated with ``lax.map`` over rows, so only one row of parameter vectors is live at a time.
    """

    def row(v):
        thetas = (plane.origin + v * plane.axes[1])[None, :] + us[:, None] * plane.axes[0][None, :]
        return jax.vmap(lambda t: cost_fn(unravel(t)))(thetas)

    return jax.lax.map(row, vs)


def grid_around(points: jax.Array, n: int, pad: float = 0.15) -> tuple[jax.Array, jax.Array]:
    """``n`` u and ``n`` v values spanning ``points`` (S, 2) with a ``pad`` fraction margin."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = pad * (hi - lo) + 1e-3
    return (
        jnp.linspace(lo[0] - margin[0], hi[0] + margin[0], n),
        jnp.linspace(lo[1] - margin[1], hi[1] + margin[1], n),
    )


def plane_view(cost_fn, paths: dict[str, jax.Array], unravel, n: int = 25) -> dict:
    """The PCA plane of the union of ``paths`` ({name: (S, P) flattened snapshots}), each
    path's coordinates (S, 2) on it, and ``cost_fn`` on an ``n`` x ``n`` grid covering them.

    Returns ``{"coords": {name: (S, 2)}, "u": (n,), "v": (n,), "cost": (n, n),
    "explained_variance": (2,)}`` as device arrays; jit it with ``cost_fn``, ``unravel`` and
    ``n`` static (everything, grid included, is one compiled program).
    """
    plane = pca_plane(jnp.concatenate(list(paths.values())))
    coords = {name: project(plane, pts) for name, pts in paths.items()}
    us, vs = grid_around(jnp.concatenate(list(coords.values())), n)
    return {
        "coords": coords,
        "u": us,
        "v": vs,
        "cost": cost_on_grid(cost_fn, unravel, plane, us, vs),
        "explained_variance": plane.explained,
    }


def sgd_path(step, params, opt_state, batches: jax.Array, batch_fn, every: int) -> jax.Array:
    """SGD's parameters every ``every`` steps along ``batches`` (steps, B) of example indices,
    flattened: ``(1 + steps // every, P)``, the start first. One ``lax.scan`` of scans (the
    outer one emits a snapshot after each ``every`` steps); the last ``steps % every`` steps,
    which end no snapshot, are not run.

    ``step`` is a ``bpjax.train`` step; ``batch_fn(idx) -> (xb, yb)`` gathers one mini-batch.
    """
    n_snap = batches.shape[0] // every
    chunks = batches[: n_snap * every].reshape(n_snap, every, batches.shape[1])

    def inner(carry, idx):
        p, s, _ = step(*carry, *batch_fn(idx))
        return (p, s), None

    def outer(carry, chunk):
        carry, _ = jax.lax.scan(inner, carry, chunk)
        return carry, ravel_pytree(carry[0])[0]

    _, snaps = jax.lax.scan(outer, (params, opt_state), chunks)
    return jnp.concatenate([ravel_pytree(params)[0][None], snaps])
