"""Backprop in NumPy with the mini-batch as one matrix: a few GEMMs per layer, no Python loop
over examples. This is how a careful NumPy programmer writes it, and a real competitor on CPU.

Rows are examples: activations are (B, n); layer l computes ``A_l = sigmoid(A_{l-1} W_l^T + b_l)``
and the mean weight gradient is ``Delta_l^T A_{l-1} / B`` (the mean of the per-example outer
products as one matrix product).
"""

from __future__ import annotations

import numpy as np

from benchmarks.reference.numpy_loop import Params, sigmoid


def cost_and_grad(params: Params, xs: np.ndarray, ys: np.ndarray) -> tuple[float, Params]:
    """Mean cost and mean gradient over a batch ``xs`` (B, n_in), one-hot ``ys`` (B, n_out)."""
    activations, a = [xs], xs
    for layer in params:
        a = sigmoid(a @ layer["w"].T + layer["b"])
        activations.append(a)
    n = xs.shape[0]
    err = a - ys
    delta = 2.0 * err * a * (1.0 - a)
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        grads[i] = {"w": (delta.T @ activations[i]) / n, "b": delta.sum(axis=0) / n}
        if i:
            a_i = activations[i]
            delta = (delta @ params[i]["w"]) * a_i * (1.0 - a_i)
    return float(np.einsum("ij,ij->", err, err)) / n, grads


def sgd_step(params: Params, xs: np.ndarray, ys: np.ndarray, eta: float) -> Params:
    """One SGD step on a batch; updates the arrays in place (no reallocation) and returns them."""
    _, grads = cost_and_grad(params, xs, ys)
    eta = xs.dtype.type(eta)
    for p, g in zip(params, grads, strict=True):
        p["w"] -= eta * g["w"]
        p["b"] -= eta * g["b"]
    return params


def sgd_epoch(
    params: Params,
    x: np.ndarray,
    labels: np.ndarray,
    batches: np.ndarray,
    eta: float,
    n_classes: int = 10,
) -> Params:
    """One epoch of SGD over the index rows ``batches`` (steps, B); params are updated in place."""
    eye = np.eye(n_classes, dtype=x.dtype)
    for idx in batches:
        params = sgd_step(params, x[idx], eye[labels[idx]], eta)
    return params


def full_batch_grad(
    params: Params,
    x: np.ndarray,
    labels: np.ndarray,
    chunk_size: int = 10_000,
    n_classes: int = 10,
) -> tuple[float, Params]:
    """Mean cost and gradient over every example, chunk by chunk to bound memory."""
    eye = np.eye(n_classes, dtype=x.dtype)
    n = x.shape[0]
    cost = 0.0
    total = [{"w": np.zeros_like(p["w"]), "b": np.zeros_like(p["b"])} for p in params]
    for start in range(0, n, chunk_size):
        xs, ys = x[start : start + chunk_size], eye[labels[start : start + chunk_size]]
        c, grads = cost_and_grad(params, xs, ys)
        m = xs.shape[0]
        cost += c * m
        for t, g in zip(total, grads, strict=True):
            t["w"] += m * g["w"]
            t["b"] += m * g["b"]
    return cost / n, [{"w": t["w"] / n, "b": t["b"] / n} for t in total]


def gd_step(
    params: Params, x: np.ndarray, labels: np.ndarray, eta: float, chunk_size: int = 10_000
) -> Params:
    """One full-batch gradient-descent step; updates params in place and returns them."""
    _, grads = full_batch_grad(params, x, labels, chunk_size)
    eta = x.dtype.type(eta)
    for p, g in zip(params, grads, strict=True):
        p["w"] -= eta * g["w"]
        p["b"] -= eta * g["b"]
    return params
