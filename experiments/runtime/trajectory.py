"""The trajectory figure's data for GD vs SGD: both parameter paths on their PCA plane, SGD's
first epoch step by step, and the cost surface on each plane, computed in compiled programs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

GRID = 21
GRID_EXAMPLES = 2_000  # the cost surface is the cost on the first this-many training examples


def first_epoch_path(step, params, opt_state, x, labels, key, batch_size: int, every: int):
    """SGD's first epoch (the batches of ``key``, as ``make_sgd_epoch`` draws them) every
    ``every`` steps: (1 + steps // every, P)."""
    from bpjax import landscape
    from bpjax.data import epoch_batches
    from bpjax.data.pixels import as_inputs, input_dtype, take_rows

    batches = epoch_batches(key, labels.shape[0], batch_size)
    dtype = input_dtype(params, x)

    def batch_fn(idx):
        return as_inputs(take_rows(x, idx), dtype), jax.nn.one_hot(labels[idx], 10, dtype=dtype)

    fn = jax.jit(lambda p, s, b: landscape.sgd_path(step, p, s, b, batch_fn, every))
    return fn(params, opt_state, batches)


def planes(sgd_snapshots, gd_snapshots, sgd_path, x, labels, spec, every: int) -> dict | None:
    """The whole run on the PCA plane of both paths, and a close-up of the start on the plane of
    GD's path and SGD's first epoch (on the whole run's plane SGD's drift hides its wobble).
    None, with the reason, when the points are not finite (a diverging run)."""
    import bpjax
    from bpjax import landscape
    from bpjax.data.pixels import as_inputs, input_dtype, slice_rows

    unravel = ravel_pytree(sgd_snapshots[0])[1]
    flat = {
        "sgd": jnp.stack([ravel_pytree(p)[0] for p in sgd_snapshots]),
        "gd": jnp.stack([ravel_pytree(p)[0] for p in gd_snapshots]),
        "sgd_first_epoch": sgd_path,
    }
    if not all(bool(jnp.all(jnp.isfinite(v))) for v in flat.values()):
        return {"omitted": "the parameter paths hold NaN/inf values"}
    n_grid = min(GRID_EXAMPLES, labels.shape[0])
    xs = as_inputs(slice_rows(x, 0, n_grid), input_dtype(sgd_snapshots[0], x))
    ys = bpjax.one_hot(labels[:n_grid], dtype=xs.dtype)

    def cost_fn(p):
        return bpjax.cost(p, xs, ys, spec=spec)

    view = jax.jit(lambda paths: landscape.plane_view(cost_fn, paths, unravel, GRID))
    out = {"whole": view(flat), "start": view({k: flat[k] for k in ("gd", "sgd_first_epoch")})}
    out = jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), out)
    for name, v in out.items():
        if not all(np.isfinite(c).all() for c in v["coords"].values()):
            return {"omitted": f"the {name} plane's coordinates overflow (parameters too large)"}
    return {**out, "path_every": every, "grid_cost_examples": int(xs.shape[0])}
