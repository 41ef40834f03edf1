"""The cost surface on a 2-D plane through parameter space, for drawing training trajectories.

The plane is spanned by the top two principal components of the parameter snapshots of one or
more trajectories (Li et al., 2018, "Visualizing the loss landscape of neural nets"). Points off
the plane are drawn at their projection, so the picture is a faithful 2-D shadow, not the path.

SGD's path within an epoch comes from ``make_sgd_epoch_with_path`` (the training epoch itself,
recording the params every k steps) or ``sgd_path`` (the steps re-run on given batches).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from bpjax.spec import DEFAULT_SPEC, Spec
from bpjax.train import TrainStep


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
    """The plane through the mean of ``points`` (S, P) along their top-2 principal directions,
    each axis pointing away from ``points[0]`` (its coordinates are <= 0: paths that start
    there run towards +u, +v).

    Found from the S x S Gram matrix of the centred points (the "method of snapshots"): for S
    snapshots of P >> S parameters, one GEMM and a small ``eigh``, several times quicker than
    an SVD of the S x P matrix (same S^2 P order). In float32 the Gram matrix squares the
    condition number, so an axis whose variance is ~1e-6 of the first is not exactly unit
    length; the plane's two large directions are what the figures use.
    """
    if points.shape[0] < 3:
        raise ValueError(f"need at least 3 snapshots to fit a plane, got {points.shape[0]}")
    origin = points.mean(axis=0)
    centred = points - origin[None, :]
    var, vecs = jnp.linalg.eigh(centred @ centred.T)  # ascending: the top two are last
    var, vecs = jnp.maximum(var[::-1][:2], 0), vecs[:, ::-1][:, :2]
    s = jnp.sqrt(var)
    # centred = U S V^T, so V^T = U^T centred / S; a zero S (fewer than two directions) gives a
    # zero axis rather than NaN.
    axes = (vecs.T @ centred) / jnp.where(s > 0, s, 1)[:, None]
    axes = axes * jnp.where(centred[0] @ axes.T > 0, -1, 1)[:, None]
    return Plane(origin, axes, var / jnp.sum(centred**2))


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


def network_cost_on_grid(
    unravel, xs: jax.Array, ys: jax.Array, plane: Plane, us, vs, *, spec: Spec = DEFAULT_SPEC
) -> jax.Array:
    """``cost_on_grid`` of ``bpjax.cost(params, xs, ys, spec=spec)`` for bpjax's network, with
    the first layer's weighted inputs interpolated instead of recomputed at every grid point.

    ``xs`` (B, n_in), ``ys`` (B, n_out); returns (len(vs), len(us)). ``z^1 = w^1 x + b^1`` is
    linear in the parameters, so on the plane ``z^1(u, v) = z^1(origin) + u z^1(axes[0]) +
    v z^1(axes[1])``: three products with ``xs`` instead of one per grid point (the first layer
    is 12,544 of the 784-16-16-10 network's 12,960 multiplies per example). Equal to
    ``cost_on_grid`` up to float rounding.
    """

    def first_z(theta):  # (B, n_1); linear in theta
        first = unravel(theta)[0]
        return xs @ first["w"].T + first["b"][None, :]

    z_o, z_u, z_v = (first_z(t) for t in (plane.origin, plane.axes[0], plane.axes[1]))
    acts = spec.layer_activations(len(unravel(plane.origin)))

    def point(u, v):
        layers = unravel(plane.origin + u * plane.axes[0] + v * plane.axes[1])[1:]

        def example_cost(z, y):  # bpjax.network.forward_trace from z^1 on, then the cost
            a = acts[0].f(z)
            for layer, act in zip(layers, acts[1:], strict=True):
                z = layer["w"] @ a + layer["b"]
                a = act.f(z)
            return spec.cost_function.cost(z, a, y)

        return jnp.mean(jax.vmap(example_cost)(z_o + u * z_u + v * z_v, ys))

    return jax.lax.map(lambda v: jax.vmap(lambda u: point(u, v))(us), vs)


def grid_around(points: jax.Array, n: int, pad: float = 0.15) -> tuple[jax.Array, jax.Array]:
    """``n`` u and ``n`` v values spanning ``points`` (S, 2) with a ``pad`` fraction margin."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = pad * (hi - lo) + 1e-3
    return (
        jnp.linspace(lo[0] - margin[0], hi[0] + margin[0], n),
        jnp.linspace(lo[1] - margin[1], hi[1] + margin[1], n),
    )


def plane_view(grid_cost, paths: dict[str, jax.Array], n: int = 25) -> dict:
    """The PCA plane of the union of ``paths`` ({name: (S, P) flattened snapshots}), each
    path's coordinates (S, 2) on it, and the cost on an ``n`` x ``n`` grid covering them.

    ``grid_cost(plane, us, vs) -> (n, n)``: ``functools.partial(cost_on_grid, cost_fn,
    unravel)`` or ``functools.partial(network_cost_on_grid, unravel, xs, ys, spec=spec)``.
    Returns ``{"coords": {name: (S, 2)}, "u": (n,), "v": (n,), "cost": (n, n),
    "explained_variance": (2,)}`` as device arrays; jit it with ``grid_cost`` and ``n`` static
    (everything, grid included, is one compiled program).
    """
    plane = pca_plane(jnp.concatenate(list(paths.values())))
    coords = {name: project(plane, pts) for name, pts in paths.items()}
    us, vs = grid_around(jnp.concatenate(list(coords.values())), n)
    return {
        "coords": coords,
        "u": us,
        "v": vs,
        "cost": grid_cost(plane, us, vs),
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


def record_every(step, every: int):
    """A ``bpjax.train`` step that also keeps the params, flattened, after every ``every``-th
    step: its state is ``(opt_state, count, path (n, P))`` in place of ``opt_state``, and
    step ``k * every`` writes row ``k - 1`` of ``path`` (once ``path`` is full, no more).

    The params and metrics are the wrapped step's, bit for bit. A ``bpjax.train.TrainStep``
    comes back as one with both variants wrapped, so ``sgd_epoch`` keeps its once-an-epoch
    finiteness check of the params.
    """

    def recording(fn):
        def wrapped(params, state, xb, yb):
            opt_state, count, path = state
            params, opt_state, metrics = fn(params, opt_state, xb, yb)
            count = count + 1

            def write(path):  # only every k-th step pays for flattening the params
                row = ravel_pytree(params)[0][None]
                return jax.lax.dynamic_update_slice_in_dim(path, row, count // every - 1, 0)

            due = (count % every == 0) & (count // every <= path.shape[0])
            path = jax.lax.cond(due, write, lambda path: path, path)
            return params, (opt_state, count, path), metrics

        return wrapped

    if isinstance(step, TrainStep):  # both variants, so sgd_epoch still runs the unchecked one
        return TrainStep(recording(step.checked), recording(step.unchecked))
    return recording(step)


def make_sgd_epoch_with_path(step, batch_size: int, every: int):
    """``bpjax.train.make_sgd_epoch(step, batch_size)`` whose metrics also hold ``"path"``
    (steps // every, P): the params, flattened, after every ``every``-th step of the epoch
    (``steps = N // batch_size``). Params, optimizer state and the other metrics are the
    plain epoch's, bit for bit: one program serves training and the trajectory.
    ``epoch(params, opt_state, x, labels, key) -> (params, opt_state, metrics)``, jitted.
    """
    from bpjax.train import sgd_epoch

    def epoch(params, opt_state, x, labels, key):
        flat = ravel_pytree(params)[0]
        path = jnp.zeros(((labels.shape[0] // batch_size) // every, flat.size), flat.dtype)
        if path.shape[0] == 0:  # no step ends a snapshot: nothing to record
            params, opt_state, metrics = sgd_epoch(
                step, params, opt_state, x, labels, key, batch_size
            )
        else:
            state = (opt_state, jnp.zeros((), jnp.int32), path)
            params, (opt_state, _, path), metrics = sgd_epoch(
                record_every(step, every), params, state, x, labels, key, batch_size
            )
        return params, opt_state, {**metrics, "path": path}

    return jax.jit(epoch)
