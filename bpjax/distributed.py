"""Data parallelism over devices and hosts: a ``data`` mesh axis and where arrays live.

The mean gradient of a mini-batch is a sum over its examples, so it splits across devices. Here
that is a matter of placement, not a second training loop: the training set is a global array
whose rows are spread over a 1-D mesh (axis ``"data"``), params and optimizer state are
replicated, and the ordinary ``bpjax.train.sgd_epoch`` runs under ``jax.set_mesh`` with each
gathered mini-batch laid out ``P("data")``. With explicit mesh axes (``jax.make_mesh``'s default)
the compiler sees the batch-sharded mean cost, differentiates it, and inserts the all-reduce of the
gradient; nothing here calls a collective.

Semantics, the same on 1 device, 8 devices or several hosts: training on the global array is
exactly single-device ``sgd_epoch`` on the same rows with the same key (a global shuffle; each
mini-batch draws from every host's rows). Each process supplies only its own rows
(``local_rows``), which are the rows its devices hold, so the global array is ``x[:n_used]``
whatever the mesh order; ``n_used`` is N rounded down to a multiple of the device count.

Cost of that choice: with row-sharded data, each step also all-reduces one (B, n_in) mini-batch
(a masked local gather, then a sum) besides the gradient. Replicating the data
(``place(x, mesh, rows=False)``, each process loading everything) makes the gather local.
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bpjax.params import init_params
from bpjax.train import make_sgd_epoch, make_train_step

DATA = "data"
LAYOUTS = ("sharded", "replicated")  # training rows split over the devices, or whole on each


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: every device of every process).

    The axis is Explicit (``jax.make_mesh``'s default), so shardings are part of array types.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh needs at least one device")
    return jax.make_mesh((len(devices),), (DATA,), devices=devices)


def check_batch_size(batch_size: int, mesh: Mesh) -> int:
    """``batch_size`` if it splits evenly over the data axis; a ValueError naming both otherwise."""
    n = mesh.shape[DATA]
    if batch_size < 1 or batch_size % n:
        raise ValueError(
            f"batch size {batch_size} is not divisible by the {n} devices of the '{DATA}' mesh "
            f"axis; every device takes an equal share of each mini-batch, so use a multiple of {n}"
        )
    return batch_size


def n_used(n: int, mesh: Mesh) -> int:
    """How many of ``n`` training rows the global array keeps: a multiple of the device count."""
    used = n - n % mesh.size
    if used < 1:
        raise ValueError(f"{n} training examples cannot be spread over {mesh.size} devices")
    return used


def local_rows(n: int, mesh: Mesh) -> slice:
    """The rows of an ``n``-row training set that this process loads and puts on its devices.

    They are the rows of the global (``n_used(n, mesh)``, ...) array that the sharding
    ``P("data")`` assigns to this process's devices: a contiguous block, since a CPU or GPU mesh
    from ``jax.make_mesh`` keeps each process's devices together (checked). One process: all rows.
    """
    total = n_used(n, mesh)
    spans = sorted(
        (s[0].start or 0, total if s[0].stop is None else s[0].stop)
        for s in NamedSharding(mesh, P(DATA)).addressable_devices_indices_map((total,)).values()
    )
    start, stop = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != stop - start:
        raise ValueError(
            f"process {jax.process_index()}'s devices are not contiguous on the '{DATA}' axis "
            f"(rows {spans}); build the mesh with each process's devices together"
        )
    return slice(start, stop)


def place(local, mesh: Mesh, rows: bool = True):
    """A pytree of process-local arrays as global arrays on ``mesh``.

    ``rows=True``: each leaf's rows are this process's block (``local_rows``), sharded ``P("data")``
    over the devices; the global array is every process's block in order. ``rows=False``: each leaf
    is the same whole value on every process (params, optimizer state, a replicated data set),
    replicated on every device.
    """
    sharding = NamedSharding(mesh, P(DATA) if rows else P())

    def put(leaf):
        if rows and np.shape(leaf)[0] % len(sharding.addressable_devices):
            raise ValueError(
                f"{np.shape(leaf)[0]} local rows do not split over this process's "
                f"{len(sharding.addressable_devices)} devices; slice them with local_rows"
            )
        # Through host memory: the input may be committed to a device outside the mesh.
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree.map(put, local)


def make_data_parallel_epoch(step, batch_size: int, mesh: Mesh, n_classes: int = 10):
    """``bpjax.train.make_sgd_epoch`` run data-parallel over ``mesh``'s ``"data"`` axis:
    ``epoch(params, opt_state, x, labels, key) -> (params, opt_state, metrics)``.

    Inputs are global arrays on ``mesh`` (``place``): params and opt_state replicated, x (N, n_in)
    and labels (N,) sharded by rows or replicated, key the same on every process. Each mini-batch
    of ``batch_size`` (a multiple of the device count) is split evenly over the devices; outputs
    are replicated. ``step`` is an ordinary ``make_train_step`` step.
    """
    epoch = make_sgd_epoch(
        step, check_batch_size(batch_size, mesh), n_classes, batch_sharding=P(DATA)
    )

    def run(params, opt_state, x, labels, key):
        # Explicit-axis sharding rules (and the gradient all-reduce) apply inside the mesh context.
        with jax.set_mesh(mesh):
            return epoch(params, opt_state, x, labels, key)

    def lower(*args):
        with jax.set_mesh(mesh):
            return epoch.lower(*args)

    run.lower = lower  # as on a jitted function: run.lower(...).compile().as_text() shows the HLO
    return run


def epoch_runner(
    n_devices: int,
    x,
    labels,
    sizes=(784, 16, 16, 10),
    batch_size: int = 64,
    data_layout: str = "sharded",
    seed: int = 0,
):
    """``(run, steps)`` for benchmarks: ``run()`` trains one SGD epoch (always from the same
    params and key) data-parallel over the first ``n_devices`` devices and waits for it.

    ``x`` (N, n_in), ``labels`` (N,): host arrays; ``steps`` = n_used // batch_size. Fits
    ``benchmarks.timing.Case(run=run, scale=1 / steps)``. On forced CPU devices the devices
    share the same cores, so this measures the partitioning and collective overhead.
    """
    if data_layout not in LAYOUTS:
        raise ValueError(f"data_layout={data_layout!r}: expected one of {LAYOUTS}")
    if len(jax.devices()) < n_devices:
        raise ValueError(f"asked for {n_devices} devices, only {len(jax.devices())} exist")
    mesh = data_mesh(jax.devices()[:n_devices])
    by_rows, n = data_layout == "sharded", n_used(len(labels), mesh)
    xs, ls = (place(np.asarray(a)[:n], mesh, rows=by_rows) for a in (x, labels))
    optimizer = optax.sgd(0.1)
    params0 = init_params(jax.random.key(seed), sizes)
    params, opt_state = place((params0, optimizer.init(params0)), mesh, rows=False)
    epoch = make_data_parallel_epoch(
        make_train_step(optimizer), batch_size, mesh, n_classes=sizes[-1]
    )
    key = jax.random.key(seed)

    def run():
        return jax.block_until_ready(epoch(params, opt_state, xs, ls, key))

    return run, n // batch_size


def time_epoch(
    n_devices: int,
    x,
    labels,
    sizes=(784, 16, 16, 10),
    batch_size: int = 64,
    data_layout: str = "sharded",
    repeats: int = 3,
    seed: int = 0,
) -> dict:
    """``epoch_runner`` timed on its own: ``{"n_devices", "steps", "compile_s",
    "seconds_per_step"}``, the median of ``repeats`` epochs after a compiling call."""
    run, steps = epoch_runner(n_devices, x, labels, sizes, batch_size, data_layout, seed)
    t0 = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {
        "n_devices": n_devices,
        "steps": steps,
        "compile_s": compile_s,
        "seconds_per_step": statistics.median(times) / steps,
    }
