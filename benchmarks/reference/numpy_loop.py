"""The classic from-scratch backprop in NumPy, one example at a time.

``classic_*``: the structure of Nielsen's ``network.py`` (neuralnetworksanddeeplearning.com,
chapter 1), adapted only to this repo's conventions (float32, cost ``sum (a - y)^2`` so the output
error is ``2 (a - y)``, params as ``{"w", "b"}`` dicts): column vectors (n, 1), ``np.dot``,
``sigmoid_prime(z)`` recomputing the sigmoid, per-example nablas summed with list comprehensions.
Examples are (x (784, 1), y (10, 1)) column tuples, built once, outside any timing (``columns``).

The unprefixed functions are the same algorithm written tighter (1-D vectors, ``a (1 - a)`` for
sigma', in-place sums): about 2x faster, still one example at a time.
"""

from __future__ import annotations

import numpy as np

Params = list[dict[str, np.ndarray]]


# --- classic (network.py) -----------------------------------------------------------------------


def classic_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def classic_sigmoid_prime(z):
    return classic_sigmoid(z) * (1 - classic_sigmoid(z))


def columns(x: np.ndarray, labels: np.ndarray, n_classes: int = 10) -> list[tuple]:
    """The training data as network.py takes it: a list of (x (n_in, 1), y (n_classes, 1))."""
    eye = np.eye(n_classes, dtype=x.dtype)
    return [(xi.reshape(-1, 1), eye[c].reshape(-1, 1)) for xi, c in zip(x, labels, strict=True)]


def classic_backprop(weights, biases, x, y):
    """(nabla_b, nabla_w) for one example; biases are columns (n_out, 1)."""
    nabla_b = [np.zeros_like(b) for b in biases]
    nabla_w = [np.zeros_like(w) for w in weights]
    activation = x
    activations = [x]
    zs = []
    for b, w in zip(biases, weights, strict=True):
        z = np.dot(w, activation) + b
        zs.append(z)
        activation = classic_sigmoid(z)
        activations.append(activation)
    delta = 2 * (activations[-1] - y) * classic_sigmoid_prime(zs[-1])
    nabla_b[-1] = delta
    nabla_w[-1] = np.dot(delta, activations[-2].transpose())
    for layer in range(2, len(weights) + 1):
        z = zs[-layer]
        sp = classic_sigmoid_prime(z)
        delta = np.dot(weights[-layer + 1].transpose(), delta) * sp
        nabla_b[-layer] = delta
        nabla_w[-layer] = np.dot(delta, activations[-layer - 1].transpose())
    return nabla_b, nabla_w


def classic_update_mini_batch(weights, biases, mini_batch, eta):
    nabla_b = [np.zeros_like(b) for b in biases]
    nabla_w = [np.zeros_like(w) for w in weights]
    for x, y in mini_batch:
        delta_nabla_b, delta_nabla_w = classic_backprop(weights, biases, x, y)
        nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b, strict=True)]
        nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w, strict=True)]
    weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(weights, nabla_w, strict=True)]
    biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(biases, nabla_b, strict=True)]
    return weights, biases


def classic_sgd_epoch(params: Params, data: list[tuple], batches: np.ndarray, eta: float) -> Params:
    """One epoch over the index rows ``batches`` (steps, B) of ``data`` (``columns``)."""
    weights = [p["w"] for p in params]
    biases = [p["b"].reshape(-1, 1) for p in params]
    eta = np.float32(eta)
    with np.errstate(over="ignore"):  # exp(-z) overflows to inf for z < -88: sigmoid 0, fine
        for idx in batches:
            weights, biases = classic_update_mini_batch(
                weights, biases, [data[i] for i in idx], eta
            )
    return [{"w": w, "b": b.reshape(-1)} for w, b in zip(weights, biases, strict=True)]


# --- tighter --------------------------------------------------------------------------------------


def sigmoid(z: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for large |z|, the same function as 1 / (1 + e^-z).
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def backprop(params: Params, x: np.ndarray, y: np.ndarray) -> Params:
    """Gradient for one example ``x`` (n_in,), one-hot ``y`` (n_out,), by BP1-BP4."""
    activations, a = [x], x
    for layer in params:
        a = sigmoid(layer["w"] @ a + layer["b"])
        activations.append(a)
    a_out = activations[-1]
    # sigma'(z) = a (1 - a): no need to keep z.
    delta = 2.0 * (a_out - y) * a_out * (1.0 - a_out)
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        grads[i] = {"w": np.outer(delta, activations[i]), "b": delta}
        if i:
            a_i = activations[i]
            delta = (params[i]["w"].T @ delta) * a_i * (1.0 - a_i)
    return grads


def mean_grad(params: Params, xs: np.ndarray, ys: np.ndarray) -> Params:
    """Mean gradient of a batch ``xs`` (B, n_in), ``ys`` (B, n_out), summed example by example."""
    total = [{"w": np.zeros_like(p["w"]), "b": np.zeros_like(p["b"])} for p in params]
    for x, y in zip(xs, ys, strict=True):
        for t, g in zip(total, backprop(params, x, y), strict=True):
            t["w"] += g["w"]
            t["b"] += g["b"]
    n = xs.dtype.type(xs.shape[0])
    return [{"w": t["w"] / n, "b": t["b"] / n} for t in total]


def sgd_epoch(
    params: Params,
    x: np.ndarray,
    labels: np.ndarray,
    batches: np.ndarray,
    eta: float,
    n_classes: int = 10,
) -> Params:
    """One epoch of SGD with learning rate ``eta`` over the index rows ``batches`` (steps, B)."""
    eye = np.eye(n_classes, dtype=x.dtype)
    eta = x.dtype.type(eta)
    for idx in batches:
        grads = mean_grad(params, x[idx], eye[labels[idx]])
        params = [
            {"w": p["w"] - eta * g["w"], "b": p["b"] - eta * g["b"]}
            for p, g in zip(params, grads, strict=True)
        ]
    return params
