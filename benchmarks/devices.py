"""Step time vs number of devices: the data-parallel epoch of ``bpjax.distributed`` over 1, 2, 4
CPU devices, interleaved in one process (``python -m benchmarks.devices``, prints JSON).

CPU devices are made with ``jax_num_cpu_devices`` and share this machine's cores, so this
measures what partitioning and the per-step all-reduce cost, not a speed-up from more hardware.
Each epoch is ``bpjax.distributed.make_data_parallel_epoch`` (784-16-16-10, float32 images, SGD).
"""

from __future__ import annotations

import argparse
import json

SIZES = (784, 16, 16, 10)


def epoch_runner(n_devices: int, x, labels, batch_size: int, data_layout: str):
    """``(run, steps)``: ``run()`` trains one data-parallel SGD epoch over the first
    ``n_devices`` devices, always from the same params and key, and waits for it."""
    import jax
    import numpy as np
    import optax

    import bpjax
    from bpjax import distributed
    from bpjax.train import make_train_step

    mesh = distributed.data_mesh(jax.devices()[:n_devices])
    by_rows = data_layout == "sharded"
    n = distributed.n_used(len(labels), mesh)
    xs = distributed.place(np.asarray(x)[:n], mesh, rows=by_rows)
    ls = distributed.place(np.asarray(labels)[:n], mesh, rows=by_rows)
    optimizer = optax.sgd(0.1)
    params0 = bpjax.init_params(jax.random.key(0), SIZES)
    params = distributed.place(params0, mesh, rows=False)
    opt_state = distributed.place(optimizer.init(params0), mesh, rows=False)
    epoch = distributed.make_data_parallel_epoch(make_train_step(optimizer), batch_size, mesh)
    key = jax.random.key(0)

    def run():
        return jax.block_until_ready(epoch(params, opt_state, xs, ls, key))

    return run, n // batch_size


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4", help="device counts to time")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in args.devices.split(",")})

    import jax

    jax.config.update("jax_num_cpu_devices", max(counts))  # before the CPU client exists

    from benchmarks.timing import Case, measure
    from bpjax.data import load_mnist

    ds = load_mnist(verbose=False)
    x, labels = ds.x_train[: args.examples], ds.y_train[: args.examples]
    cases, steps = {}, {}
    for layout in ("sharded", "replicated"):
        for n in counts:
            run, steps[(layout, n)] = epoch_runner(
                n, x, labels, batch_size=args.batch_size, data_layout=layout
            )
            cases[(layout, n)] = Case(run, scale=1 / steps[(layout, n)])
    measure(cases, args.repeats)
    rows = [
        {
            "data_layout": layout,
            "devices": n,
            "steps": steps[(layout, n)],
            "us_per_step": case.median * 1e6,
            "ms_per_epoch": case.median * steps[(layout, n)] * 1e3,
        }
        for (layout, n), case in cases.items()
    ]
    result = {
        "batch_size": args.batch_size,
        "examples": len(labels),
        "rows": rows,
        "source": "bpjax.distributed.make_data_parallel_epoch",
        "note": "forced CPU devices share the machine's 2 cores",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
