"""``k`` training steps of R runs at once, compiled once: what the runs that stop to evaluate
every so often (``to_target``, ``logged_training``) train with between evaluations."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def make_chunk(step, batch_size: int, n: int, n_classes: int = 10):
    """``chunk(params, opt_state, x, labels, orders, offset, k) -> (params, opt_state, cost)``.

    ``k`` steps (a traced int, so one compile serves every k) of each run (leading axis R on
    ``params``/``opt_state``/``orders``) from batch ``offset`` of its ``orders`` (R, batches, B),
    e.g. ``bpjax.data.epoch_batches`` rows; full-batch steps on all of ``x`` when
    ``batch_size == n``. ``cost`` (R,) is the mean of the k steps' mini-batch costs. A
    ``bpjax.train.TrainStep`` runs unchecked: callers check what they evaluate.
    """
    from bpjax.cost import one_hot
    from bpjax.data.pixels import as_inputs, input_dtype, take_rows
    from bpjax.train import TrainStep

    step = step.unchecked if isinstance(step, TrainStep) else step

    def one_run(params, opt_state, x, labels, order, offset, k):
        dtype = input_dtype(params, x)
        if batch_size == n:  # every step on all of x: scaled and one-hot once, not per step
            full = (as_inputs(x, dtype), one_hot(labels, n_classes, dtype=dtype))

        def body(j, carry):
            params, opt_state, total = carry
            if batch_size == n:
                xb, yb = full
            else:
                idx = order[offset + j]
                xb = as_inputs(take_rows(x, idx), dtype)
                yb = one_hot(labels[idx], n_classes, dtype=dtype)
            params, opt_state, metrics = step(params, opt_state, xb, yb)
            return params, opt_state, total + metrics["cost"]

        zero = jnp.zeros((), dtype)
        params, opt_state, total = jax.lax.fori_loop(0, k, body, (params, opt_state, zero))
        return params, opt_state, total / jnp.maximum(k, 1).astype(dtype)

    return jax.jit(jax.vmap(one_run, in_axes=(0, 0, None, None, 0, None, None)))
