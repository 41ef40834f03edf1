"""Training as pure functions: a step, an SGD epoch in one ``lax.scan``, a full-batch GD step.

The only state is ``(params, opt_state)``, passed in and returned. Any
``optax.GradientTransformation`` is the optimizer; ``optax.sgd(eta)`` is the classic
``theta <- theta - eta * mean gradient``.

``spec`` (``bpjax.Spec``, keyword-only everywhere) picks the activations and the cost; the
default is the sigmoid network with the quadratic cost. ``apply_fn(params, xs) -> z^L (B, n_out)``
lets any model (a Flax module's apply, say) train through the same code: it returns the output
layer's *weighted input*, and bpjax applies ``spec.output`` and the cost to it, so costs with a
log (cross-entropy, log-likelihood) are computed stably from ``z^L``. The hand backward pass
needs bpjax's network.

The gradient of a mini-batch is the mean of its examples' gradients (their averaged "wish
list"), by any of ``bpjax.grads.METHODS`` (``method=``): all exact, they differ in what they cost.

Images may be given in any form of ``bpjax.data.pixels``: floats, uint8 pixels, or
``PackedImages`` (four pixels a word; fastest to gather). Each mini-batch is scaled in-graph to
``pixel / 255``, bit-identical to ``bpjax.data``'s floats (``bpjax.data.as_inputs``).

Everything in an epoch stays on device: the shuffle (``bpjax.data.epoch_batches``), every step
in one ``lax.scan``, and the metrics, stacked in-graph; no host sync until the caller reads
them. The per-step ``finite`` flag costs a pass over the params; an epoch of ``make_train_step``
steps checks them once at its end and replays itself, checked, only if they are not finite.
See docs/performance.md for what each of these choices measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from bpjax.chunks import fold_chunks
from bpjax.cost import mean_output_cost, one_hot
from bpjax.data.batching import epoch_batches
from bpjax.data.pixels import as_inputs, input_dtype, slice_rows, take_rows
from bpjax.grads import GradFn, make_grad_fn
from bpjax.network import ApplyFn, check_apply_fn, model_outputs
from bpjax.spec import DEFAULT_SPEC, Spec

Metrics = dict[str, jax.Array]
StepFn = Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, Any, Metrics]]

__all__ = [
    "ApplyFn",
    "GradFn",
    "TrainStep",
    "all_finite",
    "apply_gradient",
    "evaluate",
    "full_batch_cost_and_grad",
    "make_evaluate",
    "make_full_batch_step",
    "make_grad_fn",
    "make_sgd_epoch",
    "make_train_step",
    "sgd_epoch",
]


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


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """A train step ``(params, opt_state, xb (B, n_in), yb (B, n_out)) -> (params, opt_state,
    metrics)`` in two variants; calling it runs ``checked``.

    ``metrics["cost"]`` is the mini-batch's mean cost before the update. ``checked``'s
    ``metrics["finite"]`` is False once the cost or the new params hold a NaN or inf (on device,
    no host sync); ``unchecked``'s looks at the cost alone, and ``sgd_epoch`` checks the params
    once per epoch instead (see there). A frozen dataclass, not a NamedTuple: ``jax.jit`` needs
    to hold a weak reference to what it compiles.
    """

    checked: StepFn
    unchecked: StepFn

    def __call__(self, params, opt_state, xb, yb):
        return self.checked(params, opt_state, xb, yb)


def make_train_step(
    optimizer: optax.GradientTransformation,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    *,
    spec: Spec = DEFAULT_SPEC,
) -> TrainStep:
    """One optimizer step on a mini-batch's mean gradient (``bpjax.grads.make_grad_fn``)."""
    grad_fn = make_grad_fn(method, apply_fn, spec=spec)

    def unchecked(params, opt_state, xb, yb):
        batch_cost, grads = grad_fn(params, xb, yb)
        params, opt_state = apply_gradient(optimizer, params, opt_state, grads)
        return params, opt_state, {"cost": batch_cost, "finite": jnp.isfinite(batch_cost)}

    def checked(params, opt_state, xb, yb):
        params, opt_state, metrics = unchecked(params, opt_state, xb, yb)
        metrics["finite"] = metrics["finite"] & all_finite(params)
        return params, opt_state, metrics

    return TrainStep(checked, unchecked)


def sgd_epoch(
    step: TrainStep | StepFn,
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

    if not isinstance(step, TrainStep):  # any step function: checked as it is
        (new_params, new_state), metrics = run(step, params, opt_state)
        return new_params, new_state, metrics
    # A make_train_step step adds its updates to the params (optax.apply_updates), and a NaN or
    # inf plus anything stays NaN or inf: once non-finite, params stay non-finite. So finite
    # final params mean every step's params were finite, and one check per epoch replaces one
    # per step (a full pass over the params each step; ~20% of a B=10 epoch). Only if the
    # final params are not finite is the epoch replayed, checked, for the per-step flags. A
    # while_loop, not a cond: under vmap it replays only when some run needs it.
    (new_params, new_state), metrics = run(step.unchecked, params, opt_state)

    def replay(carry):
        _, p, s, _ = carry
        (p, s), m = run(step.checked, p, s)
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
    dtype = input_dtype(params, x)

    def chunk_sums(start, size):
        xc = as_inputs(slice_rows(x, start, size), dtype)
        yc = one_hot(jax.lax.dynamic_slice_in_dim(labels, start, size), n_classes, dtype=dtype)
        c, g = grad_fn(params, xc, yc)
        return jax.tree.map(lambda t: t * size, (c, g))

    def add(total, size, sums):
        return jax.tree.map(jnp.add, total, sums)

    zeros = jax.tree.map(jnp.zeros_like, (jnp.zeros((), dtype), params))
    total = fold_chunks(chunk_sums, add, zeros, n, chunk_size)
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
