"""Training as pure functions: a step, an SGD epoch in one ``lax.scan``, a full-batch GD step.

The only state is ``(params, opt_state)``, passed in and returned. Any
``optax.GradientTransformation`` is the optimizer; ``optax.sgd(eta)`` is the classic
``theta <- theta - eta * mean gradient``.

The gradient of a mini-batch is the mean of its examples' gradients (their averaged "wish list").
``method="autodiff"`` takes it as ``jax.grad`` of the mean cost of ``vmap``-ed examples (equal, by
linearity, to the mean of per-example ``jax.grad``); ``method="backprop"`` uses the hand backward
pass, ``vmap``-ed over examples, with each layer's mean outer product ``delta^T a / B`` as one
matrix product. Both are exact and give the same trajectory up to float rounding.

``spec`` (``bpjax.Spec``, keyword-only everywhere) picks the activations and the cost; the
default is the sigmoid network with the quadratic cost. ``apply_fn(params, xs) -> z^L (B, n_out)``
lets any model (a Flax module's apply, say) train through the same code: it returns the output
layer's *weighted input*, and bpjax applies ``spec.output`` and the cost to it, so costs with a
log (cross-entropy, log-likelihood) are computed stably from ``z^L``. The hand backward pass
needs bpjax's network.

Training through the per-example wish lists (``PER_EXAMPLE_METHODS``, bpjax's network only):
``"vmap_grad"`` / ``"vmap_backprop"`` average the materialised per-example gradients
``vmap(jax.grad)`` / ``vmap(backprop)`` (B, n_out, n_in); XLA turns each per-example outer product
into a broadcast multiply and the mean into a reduction, never a matrix product, so they are slow.
``"vmap_grad_factored"`` is the same average, exactly, at about the batched gradient's cost: for
a dense layer ``dC_i/dw = (dC_i/db) a_i^T``, so it takes each example's bias wish list
``vmap(jax.grad)`` (the deltas) and forms the mean weight wish list as one ``delta^T a / B`` GEMM.

Images may be given in any form of ``bpjax.data.pixels``: floats, uint8 pixels, or
``PackedImages`` (four pixels a word; fastest to gather). Each mini-batch is scaled in-graph to
``pixel / 255``, bit-identical to ``bpjax.data``'s floats (``bpjax.data.as_inputs``).

Everything in an epoch stays on device: the shuffle (``bpjax.data.epoch_batches``), every step
in one ``lax.scan``,
and the metrics, stacked in-graph; no host sync until the caller reads them. The per-step
``finite`` flag costs a pass over the params; an epoch of ``make_train_step`` steps checks them
once at its end and replays itself, checked, only if they are not finite (same flags).
See docs/performance.md for what each of these choices measured.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from bpjax.backprop import backprop_cost_and_mean
from bpjax.cost import cost, example_cost, mean_output_cost, one_hot
from bpjax.data.batching import epoch_batches
from bpjax.data.pixels import as_inputs, input_dtype, slice_rows, take_rows
from bpjax.grads import METHODS, per_example_grads
from bpjax.network import forward_trace, output_layer_batch
from bpjax.spec import DEFAULT_SPEC, Spec

ApplyFn = Callable[[Any, jax.Array], jax.Array]  # (params, xs (B, n_in)) -> z^L (B, n_out)
Metrics = dict[str, jax.Array]
# (params, xs (B, n_in), ys (B, n_out)) -> (mean cost, mean gradient)
GradFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]]

PER_EXAMPLE_METHODS = ("vmap_grad", "vmap_backprop", "vmap_grad_factored")
GRAD_METHODS = METHODS + PER_EXAMPLE_METHODS


def vmap_grad_factored(params, xs: jax.Array, ys: jax.Array, *, spec: Spec = DEFAULT_SPEC):
    """Mean cost and the mean of the per-example ``jax.grad`` wish lists, with GEMMs.

    ``xs`` (B, n_in), ``ys`` (B, n_out). Each example's gradient of ``example_cost`` w.r.t. a
    layer's bias is its delta (B, n_out) from ``vmap(jax.grad)``; its weight gradient is
    ``delta a_prev^T`` (z = w a_prev + b), whose mean over the batch is ``delta^T a_prev / B``.
    Equal to averaging ``per_example_grads(..., "autodiff")`` without forming (B, n_out, n_in).
    """

    def cost_of_biases(biases, x, y):
        layers = [{"w": p["w"], "b": b} for p, b in zip(params, biases, strict=True)]
        return example_cost(layers, x, y, spec=spec)

    biases = [layer["b"] for layer in params]
    per_example = jax.vmap(jax.value_and_grad(cost_of_biases), in_axes=(None, 0, 0))
    costs, deltas = per_example(biases, xs, ys)
    # The same forward pass as inside the gradient; XLA computes it once (CSE).
    trace = lambda p, x: forward_trace(p, x, spec=spec)  # noqa: E731
    _, activations = jax.vmap(trace, in_axes=(None, 0))(params, xs)
    n = xs.shape[0]
    grads = [
        {"w": (delta.T @ a_prev) / n, "b": jnp.mean(delta, axis=0)}
        for delta, a_prev in zip(deltas, activations[:-1], strict=True)
    ]
    return jnp.mean(costs), grads


def _vmap_mean(method: str, spec: Spec = DEFAULT_SPEC) -> GradFn:
    """Mean cost and the mean over the materialised per-example gradients of ``method``."""

    def grad_fn(params, xs, ys):
        grads = per_example_grads(params, xs, ys, method, spec=spec)
        return cost(params, xs, ys, spec=spec), jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)

    return grad_fn


def check_apply_fn(apply_fn: ApplyFn | None, spec: Spec) -> None:
    """An ``apply_fn`` that carries the spec it was built for (``bpjax.flax_mlp.make_apply_fn``
    sets ``apply_fn.spec``) must be trained with that same spec."""
    built_for = getattr(apply_fn, "spec", None)
    if built_for is not None and built_for != spec:
        raise ValueError(
            f"apply_fn was built for spec {built_for}, but spec is {spec}; pass the same"
        )


def model_outputs(params, xs, apply_fn: ApplyFn | None, spec: Spec):
    """The output layer's ``(z^L, a^L)``, both (B, n_out), of bpjax's network or of ``apply_fn``."""
    if apply_fn is None:
        return output_layer_batch(params, xs, spec=spec)
    zs = apply_fn(params, xs)
    return zs, spec.output_activation.f(zs)


def make_grad_fn(
    method: str = "autodiff", apply_fn: ApplyFn | None = None, *, spec: Spec = DEFAULT_SPEC
) -> GradFn:
    """``(params, xs, ys) -> (mean cost, mean gradient)`` of ``spec``'s cost over a batch.

    ``method``: one of ``GRAD_METHODS``; all give the same numbers up to float rounding (see the
    module docstring for what each costs). Only ``"autodiff"`` works with ``apply_fn``.
    """
    if method not in GRAD_METHODS:
        raise ValueError(f"unknown gradient method {method!r}; choose one of {GRAD_METHODS}")
    if apply_fn is not None and method != "autodiff":
        raise ValueError(f"method={method!r} is bpjax's own network; use 'autodiff' with apply_fn")
    check_apply_fn(apply_fn, spec)
    if method == "backprop":
        return functools.partial(backprop_cost_and_mean, spec=spec)
    if method == "vmap_grad_factored":
        return functools.partial(vmap_grad_factored, spec=spec)
    if method in ("vmap_grad", "vmap_backprop"):
        return _vmap_mean("autodiff" if method == "vmap_grad" else "backprop", spec)

    def mean_cost(p, xs, ys):
        return mean_output_cost(*model_outputs(p, xs, apply_fn, spec), ys, spec=spec)

    return jax.value_and_grad(mean_cost)


def all_finite(tree) -> jax.Array:
    """True (a scalar bool array) when every entry of every leaf is finite; stays on device."""
    # max |x| is NaN or inf exactly when some entry is: one max-reduction per leaf, which XLA
    # fuses and vectorises (a boolean isfinite + all-reduce runs as two unfused passes on CPU).
    peaks = [jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree) if leaf.size]
    return jnp.all(jnp.isfinite(jnp.stack(peaks))) if peaks else jnp.asarray(True)


def apply_gradient(optimizer: optax.GradientTransformation, params, opt_state, grads):
    """One optimizer update from a gradient; returns the new ``(params, opt_state)``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def make_train_step(
    optimizer: optax.GradientTransformation,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    *,
    spec: Spec = DEFAULT_SPEC,
):
    """A step ``(params, opt_state, xb (B, n_in), yb (B, n_out)) -> (params, opt_state, metrics)``.

    ``metrics["cost"]`` is the mini-batch's mean cost before the update; ``metrics["finite"]`` is
    False once the cost or the new params hold a NaN or inf (checked on device, no host sync).

    ``step.unchecked`` is the same step with ``finite`` from the cost alone; ``sgd_epoch`` uses it
    and checks the params once per epoch instead (see there).
    """
    grad_fn = make_grad_fn(method, apply_fn, spec=spec)

    def unchecked(params, opt_state, xb, yb):
        batch_cost, grads = grad_fn(params, xb, yb)
        params, opt_state = apply_gradient(optimizer, params, opt_state, grads)
        return params, opt_state, {"cost": batch_cost, "finite": jnp.isfinite(batch_cost)}

    def step(params, opt_state, xb, yb):
        params, opt_state, metrics = unchecked(params, opt_state, xb, yb)
        metrics["finite"] = metrics["finite"] & all_finite(params)
        return params, opt_state, metrics

    step.unchecked = unchecked
    return step


def sgd_epoch(
    step,
    params,
    opt_state,
    x,
    labels,
    key,
    batch_size: int,
    n_classes: int = 10,
    batch_sharding=None,
):
    """One epoch of mini-batch SGD as a single ``lax.scan``: shuffle with ``key``, one step a batch.

    ``x`` (N, n_in) floats, uint8 pixels or ``bpjax.data.PackedImages``, scaled in-graph
    (``bpjax.data.as_inputs``); ``labels`` (N,) int. The batches are
    ``bpjax.data.epoch_batches``: the N % batch_size examples left over by the shuffle are
    skipped.
    Returns ``(params, opt_state, metrics)`` with every metric stacked over the steps: shape
    (N // batch_size,). Jit it with ``step`` and ``batch_size`` static, e.g. via
    ``make_sgd_epoch``.

    ``batch_sharding`` (e.g. ``PartitionSpec("data")`` under ``jax.set_mesh``) is where each
    gathered mini-batch lives; None (the default) leaves it to the gather. See bpjax.distributed.
    """
    batches = epoch_batches(key, x.shape[0], batch_size)
    dtype = input_dtype(params, x)

    def take(a, idx):
        return take_rows(a, idx, batch_sharding)

    def run(step_fn, params, opt_state):
        def body(carry, idx):
            yb = one_hot(take(labels, idx), n_classes, dtype=dtype)
            params, opt_state, metrics = step_fn(*carry, as_inputs(take(x, idx), dtype), yb)
            return (params, opt_state), metrics

        return jax.lax.scan(body, (params, opt_state), batches)

    unchecked = getattr(step, "unchecked", None)
    if unchecked is None:
        (new_params, new_state), metrics = run(step, params, opt_state)
        return new_params, new_state, metrics
    # A make_train_step step adds its updates to the params (optax.apply_updates), and a NaN or
    # inf plus anything stays NaN or inf: once non-finite, params stay non-finite. So finite
    # final params mean every step's params were finite, and one check per epoch replaces one
    # per step (a full pass over the params each step; ~20% of a B=10 epoch). Only if the
    # final params are not finite is the epoch replayed, checked, for the per-step flags. A
    # while_loop, not a cond: under vmap it replays only when some run needs it.
    (new_params, new_state), metrics = run(unchecked, params, opt_state)

    def replay(carry):
        _, p, s, _ = carry
        (p, s), m = run(step, p, s)
        # p, s flow out of the body, so XLA cannot hoist the replay out of the loop as invariant.
        return jnp.zeros((), bool), p, s, m

    todo = ~all_finite(new_params)
    carry = jax.lax.while_loop(lambda c: c[0], replay, (todo, params, opt_state, metrics))
    return new_params, new_state, carry[3]


def make_sgd_epoch(
    step, batch_size: int, n_classes: int = 10, batch_sharding=None, *, donate: bool = False
):
    """``sgd_epoch`` compiled for one step function and batch size:
    ``epoch(params, opt_state, x, labels, key) -> (params, opt_state, metrics)``.

    ``donate=True`` donates the ``params`` and ``opt_state`` buffers to the call (the caller
    must not use the arrays it passed in again); off by default, as it changes that contract.
    """

    def epoch(params, opt_state, x, labels, key):
        return sgd_epoch(
            step, params, opt_state, x, labels, key, batch_size, n_classes, batch_sharding
        )

    return jax.jit(epoch, donate_argnums=(0, 1) if donate else ())


def full_batch_cost_and_grad(
    grad_fn: GradFn, params, x, labels, chunk_size: int = 10_000, n_classes: int = 10
):
    """Mean cost and mean gradient over *every* example of ``x`` (N, n_in), ``labels`` (N,);
    ``x`` in any image form (scaled in-graph, ``bpjax.data.as_inputs``).

    Accumulated over chunks of ``chunk_size`` examples in a ``lax.scan``, so memory stays bounded
    by one chunk's activations however large N is; a last, smaller chunk takes the remainder.
    Each chunk's mean is weighted by its size, so the result equals the unchunked mean.
    """
    n = x.shape[0]
    chunk_size = max(1, min(int(chunk_size), n))
    n_full = n // chunk_size
    dtype = input_dtype(params, x)

    def chunk_sums(start, size):
        xc = as_inputs(slice_rows(x, start, size), dtype)
        yc = one_hot(jax.lax.dynamic_slice_in_dim(labels, start, size), n_classes, dtype=dtype)
        c, g = grad_fn(params, xc, yc)
        return jax.tree.map(lambda t: t * size, (c, g))

    def body(total, i):
        sums = chunk_sums(i * chunk_size, chunk_size)
        return jax.tree.map(jnp.add, total, sums), None

    zeros = jax.tree.map(jnp.zeros_like, (jnp.zeros((), dtype), params))
    total, _ = jax.lax.scan(body, zeros, jnp.arange(n_full))
    if n_full * chunk_size < n:
        rest = chunk_sums(n_full * chunk_size, n - n_full * chunk_size)
        total = jax.tree.map(jnp.add, total, rest)
    return jax.tree.map(lambda t: t / n, total)


def make_full_batch_step(
    optimizer: optax.GradientTransformation,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    chunk_size: int = 10_000,
    n_classes: int = 10,
    *,
    donate: bool = False,
    spec: Spec = DEFAULT_SPEC,
):
    """A compiled gradient-descent step on the full data set:
    ``gd_step(params, opt_state, x, labels) -> (params, opt_state, metrics)``.

    The gradient is the average over all N examples (``full_batch_cost_and_grad``);
    ``metrics["cost"]`` is the full training cost before the step. ``donate`` as in
    ``make_sgd_epoch``.
    """
    grad_fn = make_grad_fn(method, apply_fn, spec=spec)

    def gd_step(params, opt_state, x, labels):
        full_cost, grads = full_batch_cost_and_grad(
            grad_fn, params, x, labels, chunk_size, n_classes
        )
        params, opt_state = apply_gradient(optimizer, params, opt_state, grads)
        finite = jnp.isfinite(full_cost) & all_finite(params)
        return params, opt_state, {"cost": full_cost, "finite": finite}

    return jax.jit(gd_step, donate_argnums=(0, 1) if donate else ())


def evaluate(
    params,
    x,
    labels,
    apply_fn: ApplyFn | None = None,
    n_classes: int = 10,
    *,
    spec: Spec = DEFAULT_SPEC,
) -> Metrics:
    """``{"cost", "accuracy"}`` (``spec``'s mean cost) of ``params`` on ``x`` (N, n_in) floats or
    uint8 pixels, ``labels`` (N,); jit it."""
    check_apply_fn(apply_fn, spec)
    zs, outputs = model_outputs(params, as_inputs(x, input_dtype(params, x)), apply_fn, spec)
    ys = one_hot(labels, n_classes, dtype=outputs.dtype)
    return {
        "cost": mean_output_cost(zs, outputs, ys, spec=spec),
        "accuracy": jnp.mean(jnp.argmax(outputs, axis=-1) == labels),
    }


def make_evaluate(
    apply_fn: ApplyFn | None = None, n_classes: int = 10, *, spec: Spec = DEFAULT_SPEC
):
    """``evaluate`` compiled: ``eval_fn(params, x, labels) -> {"cost", "accuracy"}``."""
    return jax.jit(
        lambda params, x, labels: evaluate(params, x, labels, apply_fn, n_classes, spec=spec)
    )
