"""bpjax.landscape: the PCA plane, projections, the cost grids, plane_view, sgd_path and the
SGD epoch that records its path."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import bpjax
from bpjax import landscape, train
from bpjax.data import epoch_batches
from tests.helpers import random_problem, tiered

pytestmark = pytest.mark.usefixtures("strict_dtypes")

P = 12  # parameter-vector length of the synthetic tests


def points_in_a_plane(key, n, origin_scale=3.0):
    """``n`` points exactly on a random 2-D plane in R^P, its origin and orthonormal axes."""
    k_o, k_a, k_c = jax.random.split(key, 3)
    origin = origin_scale * jax.random.normal(k_o, (P,), dtype=jnp.float64)
    axes = jnp.linalg.qr(jax.random.normal(k_a, (P, 2), dtype=jnp.float64))[0].T  # (2, P)
    # Spread 4x wider along the first axis, so the principal directions are well separated.
    coords = jax.random.normal(k_c, (n, 2), dtype=jnp.float64) * jnp.array([[4.0, 1.0]])
    return origin[None] + coords @ axes, origin, axes


def test_pca_plane_has_orthonormal_axes_and_the_variance_of_an_eigendecomposition(x64, key):
    points = jax.random.normal(key, (9, P), dtype=jnp.float64) * jnp.linspace(0.5, 3.0, P)[None]
    plane = landscape.pca_plane(points)
    chex.assert_shape((plane.origin, plane.axes, plane.explained), ((P,), (2, P), (2,)))
    np.testing.assert_allclose(plane.axes @ plane.axes.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(plane.origin, points.mean(axis=0), rtol=1e-12)
    # Reference: the covariance matrix's eigenvalues and eigenvectors, in float64 numpy.
    centred = np.asarray(points) - np.asarray(points).mean(axis=0)
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    np.testing.assert_allclose(plane.explained, eigvals[:2] / eigvals.sum(), rtol=1e-10)
    for axis, vec in zip(plane.axes, eigvecs[:, :2].T, strict=True):
        np.testing.assert_allclose(abs(float(axis @ vec)), 1.0, rtol=1e-10)  # up to sign


@pytest.mark.slow  # another PCA compile
def test_points_on_a_plane_project_exactly_and_explain_all_the_variance(x64, key):
    points, _, axes = points_in_a_plane(key, 10)
    plane = landscape.pca_plane(points)
    np.testing.assert_allclose(jnp.sum(plane.explained), 1.0, rtol=1e-12)
    assert float(plane.explained[0]) > float(plane.explained[1]) > 0
    # The fitted plane is the generating one: each fitted axis lies in span(axes).
    np.testing.assert_allclose(jnp.linalg.norm(plane.axes @ axes.T, axis=1), 1.0, rtol=1e-12)
    coords = landscape.project(plane, points)
    chex.assert_shape(coords, (10, 2))
    lifted = plane.origin[None] + coords @ plane.axes
    np.testing.assert_allclose(lifted, points, rtol=1e-12, atol=1e-12)


def test_projection_keeps_in_plane_distances_and_drops_the_normal_part(x64, key):
    points, _, _ = points_in_a_plane(key, 6)
    plane = landscape.pca_plane(points)
    normal = jax.random.normal(jax.random.fold_in(key, 1), (P,), dtype=jnp.float64)
    normal = normal - plane.axes.T @ (plane.axes @ normal)  # orthogonal to the plane
    coords = landscape.project(plane, points)
    lifted = landscape.project(plane, points + 5.0 * normal[None])
    np.testing.assert_allclose(lifted, coords, atol=1e-12)
    dist = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(np.asarray(coords)), dist(np.asarray(points)), atol=1e-10)


def test_pca_plane_needs_three_snapshots():
    with pytest.raises(ValueError, match="at least 3 snapshots"):
        landscape.pca_plane(jnp.zeros((2, P)))


@pytest.mark.parametrize("seed", tiered([0, 1, 2, 3], [0]))
def test_pca_axes_point_away_from_the_first_point(x64, seed):
    points = jax.random.normal(jax.random.key(seed), (7, P), dtype=jnp.float64)
    plane = landscape.pca_plane(points)
    assert np.all(np.asarray(landscape.project(plane, points[:1])) <= 0)
    # The flip is the only freedom: the reversed path gives the same plane up to sign.
    other = landscape.pca_plane(points[::-1])
    np.testing.assert_allclose(np.abs(np.sum(plane.axes * other.axes, axis=1)), 1.0, rtol=1e-10)


@pytest.mark.slow  # another PCA compile
def test_points_on_a_line_give_a_zero_second_axis_not_nan(x64, key):
    direction = jax.random.normal(key, (P,), dtype=jnp.float64)
    points = jnp.linspace(-1.0, 2.0, 5)[:, None] * direction[None]
    plane = landscape.pca_plane(points)
    assert np.all(np.isfinite(np.asarray(plane.axes)))
    np.testing.assert_allclose(plane.explained, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(plane.axes[0] @ direction), np.linalg.norm(direction))
    np.testing.assert_allclose(plane.axes[1], 0.0, atol=1e-6)


@pytest.mark.slow  # a round trip per snapshot
def test_flatten_snapshots_round_trips_the_params(key):
    snaps = [bpjax.init_params(k, (4, 3, 2)) for k in jax.random.split(key, 3)]
    rows, unravel = landscape.flatten_snapshots(snaps)
    chex.assert_shape(rows, (3, 4 * 3 + 3 + 3 * 2 + 2))
    for row, params in zip(rows, snaps, strict=True):
        chex.assert_trees_all_equal(unravel(row), params)


@pytest.mark.parametrize("n", [2, 7])
@pytest.mark.parametrize("pad", [0.0, 0.15])
def test_grid_around_spans_the_points_with_the_margin(x64, key, n, pad):
    coords = jax.random.normal(key, (5, 2), dtype=jnp.float64) * jnp.array([[3.0, 0.5]])
    us, vs = landscape.grid_around(coords, n, pad=pad)
    chex.assert_shape((us, vs), ((n,), (n,)))
    for grid, column in ((us, coords[:, 0]), (vs, coords[:, 1])):
        lo, hi = float(column.min()), float(column.max())
        margin = pad * (hi - lo) + 1e-3
        np.testing.assert_allclose([grid[0], grid[-1]], [lo - margin, hi + margin], rtol=1e-12)
        np.testing.assert_allclose(np.diff(grid), (hi - lo + 2 * margin) / (n - 1), rtol=1e-9)


@pytest.mark.slow  # a direct loop over the grid
def test_cost_on_grid_equals_a_direct_loop(x64, key):
    params, xs, ys = random_problem(0, (5, 4, 3), batch=8, dtype=jnp.float64)
    snaps = [
        jax.tree.map(lambda p, k=k: p + 0.3 * jax.random.normal(k, p.shape, p.dtype), params)
        for k in jax.random.split(key, 4)
    ]
    rows, unravel = landscape.flatten_snapshots(snaps)
    plane = landscape.pca_plane(rows)
    cost_fn = lambda p: bpjax.cost(p, xs, ys)  # noqa: E731
    us, vs = jnp.linspace(-1.0, 2.0, 4), jnp.linspace(-0.5, 0.5, 3)  # unequal: catches (u, v) swaps
    grid = jax.jit(landscape.cost_on_grid, static_argnums=(0, 1))(cost_fn, unravel, plane, us, vs)
    expected = [
        [cost_fn(unravel(plane.origin + u * plane.axes[0] + v * plane.axes[1])) for u in us]
        for v in vs
    ]
    chex.assert_shape(grid, (3, 4))
    np.testing.assert_allclose(grid, np.array(expected), rtol=1e-12)


@pytest.mark.parametrize(
    "sizes, spec",
    tiered(
        [
            ((6, 3), bpjax.Spec()),
            ((6, 4, 3), bpjax.Spec()),
            ((6, 5, 4, 3), bpjax.Spec("tanh", "identity", "quadratic_half")),
            ((6, 4, 3), bpjax.Spec("relu", "softmax", "log_likelihood")),
        ],
        [((6, 5, 4, 3), bpjax.Spec("tanh", "identity", "quadratic_half"))],
        several=True,
    ),
)
def test_network_cost_on_grid_equals_the_cost_at_each_grid_point(x64, key, sizes, spec):
    params, xs, ys = random_problem(3, sizes, batch=9, dtype=jnp.float64)
    snaps = [
        jax.tree.map(lambda p, k=k: p + 0.5 * jax.random.normal(k, p.shape, p.dtype), params)
        for k in jax.random.split(key, 5)
    ]
    rows, unravel = landscape.flatten_snapshots(snaps)
    plane = landscape.pca_plane(rows)
    us, vs = jnp.linspace(-2.0, 3.0, 4), jnp.linspace(-1.0, 1.0, 3)
    fast = jax.jit(functools.partial(landscape.network_cost_on_grid, unravel, xs, ys, spec=spec))
    cost_fn = lambda p: bpjax.cost(p, xs, ys, spec=spec)  # noqa: E731
    direct = landscape.cost_on_grid(cost_fn, unravel, plane, us, vs)
    chex.assert_shape(fast(plane, us, vs), (3, 4))
    np.testing.assert_allclose(fast(plane, us, vs), direct, rtol=1e-12)


@pytest.mark.slow  # paths, plane and grid compiled
def test_plane_view_is_the_plane_of_all_paths_and_its_cost_grid(x64, key):
    params, xs, ys = random_problem(1, (5, 4, 3), batch=8, dtype=jnp.float64)
    _, unravel = landscape.flatten_snapshots([params])
    flat = ravel_pytree(params)[0]
    k_a, k_b = jax.random.split(key)
    paths = {
        "a": flat[None] + jax.random.normal(k_a, (5, flat.size), dtype=jnp.float64),
        "b": flat[None] + 0.5 * jax.random.normal(k_b, (4, flat.size), dtype=jnp.float64),
    }
    cost_fn = lambda p: bpjax.cost(p, xs, ys)  # noqa: E731
    n = 5
    grid_cost = functools.partial(landscape.cost_on_grid, cost_fn, unravel)
    view = jax.jit(landscape.plane_view, static_argnums=(0, 2))(grid_cost, paths, n)
    plane = landscape.pca_plane(jnp.concatenate([paths["a"], paths["b"]]))
    for name, pts in paths.items():
        np.testing.assert_allclose(
            view["coords"][name], landscape.project(plane, pts), rtol=1e-10, atol=1e-12
        )
    us, vs = landscape.grid_around(jnp.concatenate([view["coords"]["a"], view["coords"]["b"]]), n)
    np.testing.assert_allclose(view["u"], us, rtol=1e-10)
    np.testing.assert_allclose(view["v"], vs, rtol=1e-10)
    np.testing.assert_allclose(view["explained_variance"], plane.explained, rtol=1e-10)
    expected = landscape.cost_on_grid(cost_fn, unravel, plane, us, vs)
    np.testing.assert_allclose(view["cost"], expected, rtol=1e-10)


@pytest.mark.parametrize("steps, every", tiered([(6, 2), (7, 3), (4, 4)], [(7, 3)], several=True))
def test_sgd_path_equals_running_the_steps_one_by_one(x64, key, steps, every):
    params, xs, ys = random_problem(2, (6, 5, 3), batch=20, dtype=jnp.float64)
    opt = optax.sgd(0.5)
    step = train.make_train_step(opt)
    batches = jax.random.randint(key, (steps, 4), 0, xs.shape[0])
    batch_fn = lambda idx: (xs[idx], ys[idx])  # noqa: E731
    path = jax.jit(lambda p, s, b: landscape.sgd_path(step, p, s, b, batch_fn, every))(
        params, opt.init(params), batches
    )
    flat = lambda p: ravel_pytree(p)[0]  # noqa: E731
    expected, p, s = [flat(params)], params, opt.init(params)
    for i in range((steps // every) * every):
        p, s, _ = step(p, s, *batch_fn(batches[i]))
        if (i + 1) % every == 0:
            expected.append(flat(p))
    chex.assert_shape(path, (1 + steps // every, flat(params).size))
    np.testing.assert_allclose(path, jnp.stack(expected), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("n, batch_size, every", [(40, 4, 3), (24, 4, 7)])  # 10 steps; 6, none
def test_the_epoch_with_a_path_is_the_plain_epoch_plus_sgd_path(key, n, batch_size, every):
    """Training through it gives the plain epoch's params, state and metrics bit for bit (in
    float32, the precision the experiments train in), and its path is ``sgd_path`` on the
    epoch's batches without the start."""
    params, xs, ys = random_problem(4, (6, 5, 10), batch=n)  # sgd_epoch: 10 classes
    labels = jnp.argmax(ys, axis=-1)
    opt = optax.sgd(0.5, momentum=0.9)  # a state that changes with every step
    step = train.make_train_step(opt)
    plain = train.make_sgd_epoch(step, batch_size)(params, opt.init(params), xs, labels, key)
    p, s, metrics = landscape.make_sgd_epoch_with_path(step, batch_size, every)(
        params, opt.init(params), xs, labels, key
    )
    chex.assert_trees_all_equal((p, s), plain[:2])
    chex.assert_trees_all_equal({k: v for k, v in metrics.items() if k != "path"}, plain[2])
    batches = epoch_batches(key, n, batch_size)
    expected = landscape.sgd_path(
        step, params, opt.init(params), batches, lambda idx: (xs[idx], ys[idx]), every
    )
    chex.assert_shape(metrics["path"], ((n // batch_size) // every, expected.shape[1]))
    np.testing.assert_allclose(metrics["path"], expected[1:], rtol=1e-6, atol=1e-6)


def test_a_recording_step_stops_when_its_path_is_full(key):
    params, xs, ys = random_problem(5, (4, 3), batch=2)
    opt = optax.sgd(0.1)
    step = landscape.record_every(train.make_train_step(opt), 2)
    state = (opt.init(params), jnp.zeros((), jnp.int32), jnp.zeros((2, 15), jnp.float32))
    rows = []
    for _ in range(7):  # snapshots after steps 2, 4 and 6: the third finds the path full
        params, state, _ = jax.jit(step)(params, state, xs, ys)
        rows.append(ravel_pytree(params)[0])
    assert int(state[1]) == 7
    chex.assert_trees_all_equal(state[2], jnp.stack([rows[1], rows[3]]))


def test_recording_a_train_step_keeps_both_its_variants():
    """sgd_epoch picks the unchecked variant (one finiteness check of the params an epoch) by
    the step's type: the recording step must still be a TrainStep, both variants recording."""
    params, xs, ys = random_problem(5, (4, 3), batch=2)
    opt = optax.sgd(0.1)
    step = landscape.record_every(train.make_train_step(opt), 1)
    assert isinstance(step, train.TrainStep)
    state = (opt.init(params), jnp.zeros((), jnp.int32), jnp.zeros((1, 15), jnp.float32))
    for variant in (step.checked, step.unchecked):
        new, (_, count, path), _ = variant(params, state, xs, ys)
        assert int(count) == 1
        chex.assert_trees_all_equal(path[0], ravel_pytree(new)[0])
