"""Plain JAX, the way JAX's own ``examples/mnist_classifier_fromscratch.py`` trains: the mean
cost's ``jax.grad``, an SGD update of the params, float32 images, with the steps of an epoch in
one jitted ``lax.scan`` over the shuffled mini-batches (given, like every reference's order).

No bpjax code: its own forward pass and cost, so it measures what JAX gives a user for free.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def forward(params, xs):
    """Outputs (B, n_out) for inputs (B, n_in); params as ``[{"w": (n_out, n_in), "b"}]``."""
    a = xs
    for layer in params:
        a = jax.nn.sigmoid(a @ layer["w"].T + layer["b"][None, :])
    return a


def cost(params, xs, ys):
    """Mean over the batch of ``sum_j (a_j - y_j)^2``."""
    return jnp.mean(jnp.sum((forward(params, xs) - ys) ** 2, axis=1))


def make_sgd_epoch(eta: float, n_classes: int = 10):
    """``epoch(params, x (N, n_in) float32, labels (N,), batches (steps, B)) -> params``."""

    @jax.jit
    def epoch(params, x, labels, batches):
        def step(params, idx):
            grads = jax.grad(cost)(params, x[idx], jax.nn.one_hot(labels[idx], n_classes))
            return jax.tree.map(lambda p, g: p - eta * g, params, grads), None

        return jax.lax.scan(step, params, batches)[0]

    return epoch
