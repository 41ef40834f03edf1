"""The trajectory figure's data for GD vs SGD: both parameter paths on their PCA plane, SGD's
first epoch step by step, and the cost surface on each plane, all in one compiled program.

SGD's first epoch is recorded by the training epoch itself
(``bpjax.landscape.make_sgd_epoch_with_path``), so nothing is re-run here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

GRID = 21
GRID_EXAMPLES = 2_000  # the cost surface is the cost on the first this-many training examples
PATHS = ("sgd", "gd", "sgd_first_epoch")


def _views(paths, x, labels, *, unravel, spec, n_grid, dtype):
    import bpjax
    from bpjax import landscape
    from bpjax.data.pixels import as_inputs, slice_rows

    xs = as_inputs(slice_rows(x, 0, n_grid), dtype)
    ys = bpjax.one_hot(labels[:n_grid], dtype=dtype)
    # Non-finite points are zeroed before the eigendecomposition (LAPACK's result on them is
    # undefined); the flag says so.
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in paths.values()]))
    paths = {k: jnp.where(finite, p, 0) for k, p in paths.items()}
    grid_cost = functools.partial(landscape.network_cost_on_grid, unravel, xs, ys, spec=spec)
    views = {
        "whole": landscape.plane_view(grid_cost, paths, GRID),
        "start": landscape.plane_view(
            grid_cost, {k: paths[k] for k in ("gd", "sgd_first_epoch")}, GRID
        ),
    }
    return views, finite


def planes(params, x, labels, spec, snapshots: dict, first_epoch, every: int) -> dict:
    """The whole run on the PCA plane of both paths, and a close-up of the start on the plane of
    GD's path and SGD's first epoch (on the whole run's plane SGD's drift hides its wobble).

    ``snapshots``: {"sgd", "gd": lists of flat (P,) params, one per epoch and the start};
    ``first_epoch`` (1 + steps // every, P); ``params`` gives their structure. The cost
    surface is the cost on the first ``GRID_EXAMPLES`` rows of ``x`` (N, n_in), ``labels``.
    ``{"omitted": reason}`` when the points are not finite (a diverging run).
    """
    paths = {"sgd_first_epoch": first_epoch, **{k: np.stack(v) for k, v in snapshots.items()}}
    n_grid = min(GRID_EXAMPLES, labels.shape[0])
    from bpjax.data.pixels import input_dtype

    unravel, dtype = ravel_pytree(params)[1], input_dtype(params, x)
    program = functools.partial(_views, unravel=unravel, spec=spec, n_grid=n_grid, dtype=dtype)
    views, finite = jax.jit(program)({k: paths[k] for k in PATHS}, x, labels)
    if not bool(finite):
        return {"omitted": "the parameter paths hold NaN/inf values"}
    out = jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), views)
    for name, v in out.items():
        if not all(np.isfinite(c).all() for c in v["coords"].values()):
            return {"omitted": f"the {name} plane's coordinates overflow (parameters too large)"}
    return {**out, "path_every": every, "grid_cost_examples": n_grid}
