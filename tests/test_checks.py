"""bpjax.checks, through the public API: a wrong shape fails at trace time with a message."""

import jax
import jax.numpy as jnp
import pytest

import bpjax
from tests.helpers import random_problem

pytestmark = pytest.mark.usefixtures("strict_dtypes")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, xs, ys: bpjax.forward(p, xs), "one example of shape"),
        (lambda p, xs, ys: bpjax.forward_batch(p, xs[:, :5]), "batch of shape"),
        (lambda p, xs, ys: bpjax.forward_batch(p, xs[0]), "batch of shape"),
        (lambda p, xs, ys: bpjax.cost(p, xs, ys[:, :2]), "one-hot targets of shape"),
        (lambda p, xs, ys: bpjax.cost(p, xs, ys[:3]), "one-hot targets of shape"),
        (lambda p, xs, ys: bpjax.example_cost(p, xs[0], ys[0, :2]), "one-hot target of shape"),
        (lambda p, xs, ys: bpjax.per_example_grads(p, xs[:0], ys[:0]), "empty"),
        (lambda p, xs, ys: bpjax.mean_grad(p, xs[:, :7], ys), "batch of shape"),
        (lambda p, xs, ys: bpjax.backprop(p[::-1], xs[0], ys[0]), "inputs but layer"),
        (
            lambda p, xs, ys: bpjax.backprop(p[:1] + [{"w": p[1]["w"]}], xs[0], ys[0]),
            "keys 'w' and 'b'",
        ),
        (lambda p, xs, ys: bpjax.forward([{**p[0], "b": p[0]["b"][:2]}], xs[0]), "w must be"),
        (lambda p, xs, ys: bpjax.forward([], xs[0]), "non-empty list"),
    ],
)
def test_wrong_shapes_give_clear_errors(call, message):
    params, xs, ys = random_problem(0, (8, 4, 3), batch=5)
    with pytest.raises(ValueError, match=message):
        call(params, xs, ys)


def test_the_checks_run_at_trace_time_under_jit():
    params, xs, ys = random_problem(0, (8, 4, 3), batch=5)
    with pytest.raises(ValueError, match="one-hot targets of shape"):
        jax.jit(bpjax.cost)(params, xs, ys[:, :2])
    # The right shapes pass the same checks.
    assert jnp.isfinite(jax.jit(bpjax.cost)(params, xs, ys))
