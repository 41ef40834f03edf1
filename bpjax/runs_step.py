"""One training step of R runs at once, where they share a mini-batch: the products of all runs
as few, wide matrix products. ``bpjax.sweep`` trains with it.

The runs' params carry a leading run axis R (layers ``{"w": (R, n_out, n_in), "b": (R, n_out)}``).
With one mini-batch for every run, the forward pass is written column-wise, as in the math
(``z = w a + b``, ``a`` (R, n, B)): the first layer's R products are one matrix product, and
``jax.grad`` of the sum of the runs' costs gives each run its own gradient (run r's cost depends
on run r's params only). See docs/performance.md ("Sweeps") for what it measured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from bpjax.checks import check_batch
from bpjax.spec import DEFAULT_SPEC, Spec
from bpjax.train import ApplyFn, apply_gradient, make_train_step

# (params, opt_state, xb, yb) -> (params, opt_state, cost (R,)) for all R runs; xb (B, n_in) and
# yb (B, n_out) shared by the runs, or (R, B, n_in) and (R, B, n_out), one batch a run.
RunsStep = Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, Any, jax.Array]]


@jax.custom_vjp
def _runs_matmul(w: jax.Array, a: jax.Array) -> jax.Array:
    """``w @ a`` per run: w (R, n_out, n_in), a (R, n_in, B) -> (R, n_out, B)."""
    return jnp.matmul(w, a)


def _runs_matmul_fwd(w, a):
    return jnp.matmul(w, a), (w, a)


def _runs_matmul_bwd(residuals, delta):
    w, a = residuals
    # BP2's w^T delta with w^T made explicit: XLA:CPU sends a batched product whose left operand
    # is contracted on its rows to a slow generic loop, but w^T (a few KB) to its GEMM library.
    # The barrier keeps XLA from folding the transpose back into the product.
    w_t = jax.lax.optimization_barrier(jnp.swapaxes(w, 1, 2))
    return jnp.matmul(delta, jnp.swapaxes(a, 1, 2)), jnp.matmul(w_t, delta)


_runs_matmul.defvjp(_runs_matmul_fwd, _runs_matmul_bwd)


def runs_product(w: jax.Array, a: jax.Array) -> jax.Array:
    """``w a`` for every run: w (R, n_out, n_in); a (n_in, B), the same for every run, or
    (R, n_in, B), one a run -> (R, n_out, B).

    A shared ``a`` makes the R products one matrix product (R n_out, n_in) @ (n_in, B), and its
    weight gradient one (R n_out, B) @ (B, n_in): two large GEMMs instead of 2R small ones.
    """
    if a.ndim == 2:
        n_runs, n_out, n_in = w.shape
        return (w.reshape(n_runs * n_out, n_in) @ a).reshape(n_runs, n_out, a.shape[1])
    return _runs_matmul(w, a)


def runs_costs(params, xb: jax.Array, yb: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> jax.Array:
    """Every run's mean ``spec`` cost on one mini-batch shared by the runs, (R,), for bpjax's
    network: layers ``{"w": (R, n_out, n_in), "b": (R, n_out)}``, ``xb`` (B, n_in), ``yb``
    (B, n_out) one-hot.

    Activations are columns, as in the math (``z = w a + b``, ``a`` (R, n, B)), so every layer is
    one batched product and the first one a single matrix product (``runs_product``).
    """
    one_run = [
        {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in lay.items()} for lay in params
    ]
    check_batch(one_run, xb, yb)
    a = xb.T
    for layer, act in zip(params, spec.layer_activations(len(params)), strict=True):
        z = runs_product(layer["w"], a) + layer["b"][:, :, None]
        # An activation with an f_prime is elementwise (bpjax.activations' contract): any layout.
        if act.f_prime is not None:
            a = act.f(z)
        else:  # it mixes the neurons of a column: neurons last, as its contract says
            a = jnp.swapaxes(act.f(jnp.swapaxes(z, 1, 2)), 1, 2)
    per_example = jax.vmap(spec.cost_function.cost, in_axes=(1, 1, 1))  # over the B columns
    per_run = jax.vmap(per_example, in_axes=(0, 0, None))
    return jnp.mean(per_run(z, a, yb.T), axis=1)


def make_runs_step(
    optimizer: optax.GradientTransformation,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    *,
    spec: Spec = DEFAULT_SPEC,
) -> RunsStep:
    """One SGD step of all R runs: ``(params, opt_state, xb, yb) -> (params, opt_state, cost)``.

    ``params``/``opt_state`` have a leading run axis; ``xb`` (B, n_in), ``yb`` (B, n_out) are one
    mini-batch for every run, or (R, B, n_in), (R, B, n_out) one per run; ``cost`` (R,) is each
    run's mean cost before its update. A shared batch, bpjax's network and ``method="autodiff"``:
    ``jax.grad`` of the sum of ``runs_costs`` (run r's cost depends on run r's params only, so
    its gradient is run r's). Otherwise ``bpjax.train.make_train_step``'s step, ``vmap``-ped.
    """
    unchecked = make_train_step(optimizer, method, apply_fn, spec=spec).unchecked

    def vmapped(params, opt_state, xb, yb):
        batch_axis = 0 if xb.ndim == 3 else None
        step = jax.vmap(unchecked, in_axes=(0, 0, batch_axis, batch_axis))
        params, opt_state, metrics = step(params, opt_state, xb, yb)
        return params, opt_state, metrics["cost"]

    if apply_fn is not None or method != "autodiff":
        return vmapped

    def total_cost(params, xb, yb):
        costs = runs_costs(params, xb, yb, spec=spec)
        return jnp.sum(costs), costs

    grad_fn = jax.grad(total_cost, has_aux=True)

    def update(
        grads, opt_state, params
    ):  # one run's update: bpjax.train's, argument order for vmap
        return apply_gradient(optimizer, params, opt_state, grads)

    def runs_step(params, opt_state, xb, yb):
        # One batch a run shares no product between runs: the vmapped step is as fast there
        # (the column form's batched first-layer products measured slower).
        if xb.ndim == 3:
            return vmapped(params, opt_state, xb, yb)
        grads, costs = grad_fn(params, xb, yb)
        params, opt_state = jax.vmap(update)(grads, opt_state, params)
        return params, opt_state, costs

    return runs_step
