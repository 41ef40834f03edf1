"""Every implementation as a timing ``Case``: one SGD epoch or one full-batch GD step on the same
data, from the same initial params, in the same mini-batch order.

Each call restarts from the initial params, so no case drifts into saturated sigmoids (and slow
denormal arithmetic) over the repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bpjax
from benchmarks.reference import jax_plain, numpy_loop, numpy_matrix, torch_eager
from benchmarks.timing import Case
from bpjax import train
from bpjax.data import IMAGE_FORMS, as_inputs, epoch_batches
from bpjax.data.pixels import device_images, take_rows

INIT_KEY = jax.random.key(0)
ORDER_KEY = jax.random.key(1)


@dataclass(frozen=True)
class Problem:
    """A network, a mini-batch size and a learning rate: one column of the results table."""

    sizes: tuple[int, ...]
    batch_size: int
    eta: float = 3.0

    @property
    def name(self) -> str:
        return f"{'-'.join(map(str, self.sizes))}/B={self.batch_size}"


class Data(NamedTuple):
    """The training set: NumPy float32 (the references), and on the JAX device in each form of
    ``bpjax.data.IMAGE_FORMS`` (``images``: packed, uint8, float32). ``labels`` int32."""

    x: np.ndarray
    labels: np.ndarray
    images: dict[str, jax.Array]
    jlabels: jax.Array

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def head(self, n: int) -> Data:
        """The first ``n`` examples (new device arrays, made once, outside any timing)."""
        if n >= self.n:
            return self
        images = {k: jax.tree.map(lambda a: a[:n], v) for k, v in self.images.items()}
        return Data(self.x[:n], self.labels[:n], images, self.jlabels[:n])


def make_data(x: np.ndarray, labels: np.ndarray) -> Data:
    """``x`` (N, 784) float32 pixel / 255 as bpjax.data makes it, ``labels`` (N,); the device
    forms are those of ``bpjax.data.device_arrays``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int32)
    images = {form: device_images(x, form) for form in IMAGE_FORMS}
    return Data(x, labels, images, jnp.asarray(labels))


def init_params(sizes) -> list[dict[str, np.ndarray]]:
    """The shared initial params (bpjax's scaled init, key 0) as NumPy float32 arrays."""
    return jax.tree.map(np.array, bpjax.init_params(INIT_KEY, sizes))  # writable copies


def batch_order(n: int, batch_size: int) -> np.ndarray:
    """The epoch's mini-batch indices (steps, B) that every implementation follows."""
    return np.asarray(epoch_batches(ORDER_KEY, n, batch_size))


def epoch_scale(n_timed: int, batch_size: int, n_epoch: int) -> float:
    """Factor from an epoch over ``n_timed`` examples to one over ``n_epoch`` (steps ratio)."""
    return (n_epoch // batch_size) / (n_timed // batch_size)


def _copy(params):
    return [{k: v.copy() for k, v in layer.items()} for layer in params]


# --- bpjax -------------------------------------------------------------------------------------


def bpjax_epoch(
    problem: Problem,
    data: Data,
    method: str = "autodiff",
    images: str = "packed",
    n_timed: int | None = None,
) -> Case:
    """``bpjax.train.make_sgd_epoch``: the whole epoch, shuffle included, one compiled call;
    ``images`` one of ``bpjax.data.IMAGE_FORMS``."""
    sub = data.head(n_timed or data.n)
    optimizer = optax.sgd(problem.eta)
    params = jax.tree.map(jnp.asarray, init_params(problem.sizes))
    opt_state = optimizer.init(params)
    epoch = train.make_sgd_epoch(train.make_train_step(optimizer, method), problem.batch_size)
    x = sub.images[images]
    scale = epoch_scale(sub.n, problem.batch_size, data.n)

    def run():
        return jax.block_until_ready(epoch(params, opt_state, x, sub.jlabels, ORDER_KEY))

    note = f"timed on {sub.n:,} examples, x{scale:g}" if scale != 1 else ""
    return Case(run, scale, note)


def bpjax_step_loop(problem: Problem, data: Data, n_timed: int | None = None) -> Case:
    """The same steps, one jitted call per mini-batch from a Python loop (no ``lax.scan``)."""
    sub = data.head(n_timed or data.n)
    optimizer = optax.sgd(problem.eta)
    params = jax.tree.map(jnp.asarray, init_params(problem.sizes))
    opt_state = optimizer.init(params)
    train_step = train.make_train_step(optimizer)

    @jax.jit
    def step(p, s, x, labels, idx):
        return train_step(
            p, s, as_inputs(take_rows(x, idx), jnp.float32), bpjax.one_hot(labels[idx])
        )

    batches = [jnp.asarray(b) for b in batch_order(sub.n, problem.batch_size)]
    x, labels = sub.images["packed"], sub.jlabels
    scale = epoch_scale(sub.n, problem.batch_size, data.n)

    def run():
        p, s = params, opt_state
        for idx in batches:
            p, s, _ = step(p, s, x, labels, idx)
        return jax.block_until_ready(p)

    note = f"timed on {sub.n:,} examples, x{scale:g}" if scale != 1 else ""
    return Case(run, scale, note)


def bpjax_full_batch(
    problem: Problem,
    data: Data,
    method: str = "autodiff",
    images: str = "uint8",
    chunk_size: int = 10_000,
) -> Case:
    """``bpjax.train.make_full_batch_step``: one gradient-descent step over every example."""
    optimizer = optax.sgd(problem.eta)
    params = jax.tree.map(jnp.asarray, init_params(problem.sizes))
    opt_state = optimizer.init(params)
    gd_step = train.make_full_batch_step(optimizer, method, chunk_size=chunk_size)
    x = data.images[images]

    def run():
        return jax.block_until_ready(gd_step(params, opt_state, x, data.jlabels))

    return Case(run)


# --- sweeps: many runs at once ------------------------------------------------------------------

SWEEP_RATES = (0.5, 8.0)  # the sweep's learning rates, spaced evenly in log between these


def sweep_runs(problem: Problem, n_lrs: int, n_seeds: int):
    """``(tx, runs, stacked)``: ``n_lrs`` rates x ``n_seeds`` init seeds of ``problem``'s net
    with ``make_sweep_optimizer("sgd")``; ``runs`` the per-run ``(params, opt_state)``,
    ``stacked`` the same with a leading run axis."""
    from bpjax.optimizers import make_sweep_optimizer, set_learning_rate

    tx = make_sweep_optimizer("sgd")
    lrs = np.repeat(np.geomspace(*SWEEP_RATES, n_lrs), n_seeds).astype(np.float32)
    seeds = np.tile(np.arange(n_seeds), n_lrs)
    runs = []
    for seed, lr in zip(seeds, lrs, strict=True):
        params = bpjax.init_params(jax.random.key(int(seed)), problem.sizes)
        runs.append((params, set_learning_rate(tx.init(params), lr)))
    return tx, runs, jax.tree.map(lambda *leaves: jnp.stack(leaves), *runs)


def sweep_cases(problem: Problem, data: Data, n_lrs: int, n_seeds: int) -> dict[str, Case]:
    """One epoch of R = n_lrs x n_seeds runs, all in one mini-batch order, packed images:

    - ``sweep``: ``bpjax.sweep.make_sweep_epoch`` (all runs' products at once);
    - ``vmap(sgd_epoch)``: ``bpjax.train.sgd_epoch`` ``vmap``-ped over the runs (how the sweep
      was first written);
    - ``sequential``: the single-run epoch called once per run;
    - ``first layer alone``: the work no sweep avoids (``first_layer_floor``).
    """
    from bpjax.sweep import make_sweep_epoch

    tx, runs, stacked = sweep_runs(problem, n_lrs, n_seeds)
    x, labels, b = data.images["packed"], data.jlabels, problem.batch_size
    sweep = make_sweep_epoch(tx, b)
    step = train.make_train_step(tx)
    vmapped = jax.jit(
        jax.vmap(
            lambda p, o, x, y, k: train.sgd_epoch(step, p, o, x, y, k, b),
            in_axes=(0, 0, None, None, None),
        )
    )
    single = train.make_sgd_epoch(step, b)
    floor = first_layer_floor(stacked[0][0]["w"], b)

    def sequential():
        return jax.block_until_ready([single(p, o, x, labels, ORDER_KEY) for p, o in runs])

    return {
        "sweep": Case(lambda: jax.block_until_ready(sweep(*stacked, x, labels, ORDER_KEY, {}))),
        "vmap(sgd_epoch)": Case(
            lambda: jax.block_until_ready(vmapped(*stacked, x, labels, ORDER_KEY))
        ),
        "sequential": Case(sequential),
        "first layer alone": Case(lambda: jax.block_until_ready(floor(x, ORDER_KEY))),
    }


def first_layer_floor(w: jax.Array, batch_size: int):
    """``run(x, key)``: the part of a shared-order sweep epoch that no implementation avoids.

    For each mini-batch (``epoch_batches``, gathered and scaled as in training), the R runs'
    first-layer product ``(R n_1, n_in) @ (n_in, B)``, a weight gradient of the same shape
    ``(R n_1, B) @ (B, n_in)`` and the weight update, nothing else: at 784-16-16-10 these two
    GEMMs are ~95% of a step's FLOPs. ``w`` (R, n_1, n_in): the runs' first-layer weights.
    """
    wide = w.reshape(-1, w.shape[-1])

    @jax.jit
    def run(x, key):
        def body(w, idx):
            xb = as_inputs(take_rows(x, idx), jnp.float32)
            z = w @ xb.T  # (R n_1, B)
            return w - 1e-9 * (z @ xb), None  # z stands in for the deltas: same shapes

        return jax.lax.scan(body, wide, epoch_batches(key, x.shape[0], batch_size))[0]

    return run


def time_sharded_sweep(
    n_devices: int, n_lrs: int, n_seeds: int, examples: int, repeats: int
) -> dict:
    """A sweep epoch on one device vs its runs split over ``n_devices`` (``shard_runs``),
    interleaved. Call in a process started with ``n_devices`` CPU devices (the count is fixed at
    JAX start-up); they share this machine's cores."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from benchmarks.timing import measure
    from bpjax.data import load_mnist
    from bpjax.sweep import make_sweep_epoch, runs_mesh

    ds = load_mnist(verbose=False)
    data = make_data(ds.x_train[:examples], ds.y_train[:examples])
    problem = Problem((784, 16, 16, 10), 100)
    tx, _, stacked = sweep_runs(problem, n_lrs, n_seeds)
    x, labels = data.images["packed"], data.jlabels
    mesh = runs_mesh(jax.devices()[:n_devices])
    one = make_sweep_epoch(tx, problem.batch_size)
    split = make_sweep_epoch(tx, problem.batch_size, shard_runs=mesh)
    placed = jax.device_put((x, labels), NamedSharding(mesh, P()))
    cases = {
        "one device": Case(lambda: jax.block_until_ready(one(*stacked, x, labels, ORDER_KEY, {}))),
        f"{n_devices} devices": Case(
            lambda: jax.block_until_ready(split(*stacked, *placed, ORDER_KEY, {}))
        ),
    }
    measure(cases, repeats)
    t1, tn = (c.median for c in cases.values())
    return {
        "devices": n_devices,
        "runs": n_lrs * n_seeds,
        "examples": data.n,
        "one_device_s": t1,
        "split_s": tn,
        "speedup": t1 / tn,
        "source": "bpjax.sweep.make_sweep_epoch(shard_runs=runs_mesh(...))",
    }


# --- plain JAX ---------------------------------------------------------------------------------


def jax_plain_epoch(problem: Problem, data: Data) -> Case:
    """``reference.jax_plain``: jit(grad) of the mean cost in a ``lax.scan``, float32 images, the
    batch order given (not timed, as for the NumPy and PyTorch references)."""
    params = jax.tree.map(jnp.asarray, init_params(problem.sizes))
    epoch = jax_plain.make_sgd_epoch(problem.eta)
    batches = jnp.asarray(batch_order(data.n, problem.batch_size))
    x = data.images["float32"]

    def run():
        return jax.block_until_ready(epoch(params, x, data.jlabels, batches))

    return Case(run)


# --- shuffles ----------------------------------------------------------------------------------


def shuffle_case(n: int, which: str) -> Case:
    """One permutation of n, jitted: ``bpjax.data.shuffle`` or ``jax.random.permutation``."""
    from bpjax.data import shuffle

    fn = {"bpjax.data.shuffle": shuffle, "jax.random.permutation": jax.random.permutation}[which]
    perm = jax.jit(fn, static_argnums=1)
    return Case(lambda: jax.block_until_ready(perm(ORDER_KEY, n)))


# --- NumPy -------------------------------------------------------------------------------------


def numpy_loop_epoch(problem: Problem, data: Data, n_timed: int, classic: bool = True) -> Case:
    """The per-example loop (network.py's, or the tighter one), timed on the first ``n_timed``
    examples and scaled to the epoch."""
    sub = data.head(n_timed)
    params = init_params(problem.sizes)
    batches = batch_order(sub.n, problem.batch_size)
    scale = epoch_scale(sub.n, problem.batch_size, data.n)
    examples = numpy_loop.columns(sub.x, sub.labels) if classic else None

    def run():
        if classic:
            return numpy_loop.classic_sgd_epoch(params, examples, batches, problem.eta)
        return numpy_loop.sgd_epoch(params, sub.x, sub.labels, batches, problem.eta)

    note = f"timed on {sub.n:,} examples, x{scale:g}" if scale != 1 else ""
    return Case(run, scale, note)


def numpy_matrix_epoch(problem: Problem, data: Data, n_timed: int | None = None) -> Case:
    sub = data.head(n_timed or data.n)
    params = init_params(problem.sizes)
    batches = batch_order(sub.n, problem.batch_size)
    scale = epoch_scale(sub.n, problem.batch_size, data.n)

    def run():
        return numpy_matrix.sgd_epoch(_copy(params), sub.x, sub.labels, batches, problem.eta)

    note = f"timed on {sub.n:,} examples, x{scale:g}" if scale != 1 else ""
    return Case(run, scale, note)


def numpy_full_batch(problem: Problem, data: Data, chunk_size: int = 10_000) -> Case:
    params = init_params(problem.sizes)

    def run():
        return numpy_matrix.gd_step(_copy(params), data.x, data.labels, problem.eta, chunk_size)

    return Case(run)


# --- PyTorch -----------------------------------------------------------------------------------


class _Torch(NamedTuple):
    params: list
    initial: list
    x: object
    labels: object


def _torch_setup(problem: Problem, data: Data) -> _Torch:
    import torch

    params = torch_eager.to_torch(init_params(problem.sizes))
    initial = [{k: v.detach().clone() for k, v in layer.items()} for layer in params]
    return _Torch(
        params, initial, torch.from_numpy(data.x), torch.from_numpy(data.labels.astype(np.int64))
    )


def _torch_reset(t: _Torch) -> None:
    import torch

    with torch.no_grad():
        for layer, init in zip(t.params, t.initial, strict=True):
            for k in layer:
                layer[k].copy_(init[k])


def torch_epoch(problem: Problem, data: Data, n_timed: int | None = None) -> Case:
    import torch

    sub = data.head(n_timed or data.n)
    t = _torch_setup(problem, sub)
    optimizer = torch_eager.make_sgd(t.params, problem.eta)
    batches = torch.from_numpy(batch_order(sub.n, problem.batch_size).astype(np.int64))
    scale = epoch_scale(sub.n, problem.batch_size, data.n)

    def run():
        _torch_reset(t)
        return torch_eager.sgd_epoch(t.params, optimizer, t.x, t.labels, batches)

    note = f"timed on {sub.n:,} examples, x{scale:g}" if scale != 1 else ""
    return Case(run, scale, note)


def torch_vmap_epoch(problem: Problem, data: Data, n_timed: int) -> Case:
    import torch

    sub = data.head(n_timed)
    t = _torch_setup(problem, sub)
    step = torch_eager.make_vmap_sgd_step(problem.eta)
    batches = torch.from_numpy(batch_order(sub.n, problem.batch_size).astype(np.int64))
    scale = epoch_scale(sub.n, problem.batch_size, data.n)

    def run():
        _torch_reset(t)
        return torch_eager.vmap_sgd_epoch(step, t.params, t.x, t.labels, batches)

    note = f"timed on {sub.n:,} examples, x{scale:g}" if scale != 1 else ""
    return Case(run, scale, note)


def torch_full_batch(problem: Problem, data: Data, chunk_size: int = 10_000) -> Case:
    t = _torch_setup(problem, data)
    optimizer = torch_eager.make_sgd(t.params, problem.eta)

    def run():
        _torch_reset(t)
        return torch_eager.full_batch_step(t.params, optimizer, t.x, t.labels, chunk_size)

    return Case(run)
