"""PyTorch eager on CPU: the same network trained the way a PyTorch user writes it, and
per-example gradients with ``torch.func.vmap(grad)``. Needs the optional extra ``bench``.

Params are torch float32 tensors in bpjax's layout, ``{"w": (n_out, n_in), "b": (n_out,)}``;
``F.linear(a, w, b) = a w^T + b``. ``available()`` says whether torch can be imported.
"""

from __future__ import annotations

import importlib.util

import numpy as np


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


def to_torch(params) -> list[dict]:
    """NumPy/JAX params -> fresh torch leaf tensors that require grad."""
    import torch

    return [
        {
            k: torch.tensor(np.asarray(v), dtype=torch.float32, requires_grad=True)
            for k, v in layer.items()
        }
        for layer in params
    ]


def to_numpy(params) -> list[dict[str, np.ndarray]]:
    return [{k: v.detach().numpy().copy() for k, v in layer.items()} for layer in params]


def forward(params, xs):
    """Outputs (B, n_out) for inputs (B, n_in)."""
    import torch
    import torch.nn.functional as F

    a = xs
    for layer in params:
        a = torch.sigmoid(F.linear(a, layer["w"], layer["b"]))
    return a


def cost(params, xs, ys):
    """Mean over the batch of ``sum_j (a_j - y_j)^2``."""
    return ((forward(params, xs) - ys) ** 2).sum(dim=1).mean()


def make_sgd(params, eta: float):
    import torch

    return torch.optim.SGD([t for layer in params for t in layer.values()], lr=eta)


def sgd_epoch(params, optimizer, x, labels, batches, n_classes: int = 10):
    """One epoch: ``x`` (N, n_in) float32, ``labels`` (N,) int64, ``batches`` (steps, B) int64."""
    import torch.nn.functional as F

    for idx in batches:
        xb, yb = x[idx], F.one_hot(labels[idx], n_classes).float()
        optimizer.zero_grad(set_to_none=True)
        cost(params, xb, yb).backward()
        optimizer.step()
    return params


def full_batch_step(params, optimizer, x, labels, chunk_size: int = 10_000, n_classes: int = 10):
    """One gradient-descent step on every example, gradients accumulated chunk by chunk."""
    import torch.nn.functional as F

    n = x.shape[0]
    optimizer.zero_grad(set_to_none=True)
    for start in range(0, n, chunk_size):
        xs, lab = x[start : start + chunk_size], labels[start : start + chunk_size]
        # Weighting each chunk's mean by its share makes the summed .grad the full mean.
        (cost(params, xs, F.one_hot(lab, n_classes).float()) * (xs.shape[0] / n)).backward()
    optimizer.step()
    return params


def make_vmap_sgd_step(eta: float):
    """An SGD step whose gradient is the mean of ``torch.func.vmap(grad)`` per-example gradients."""
    import torch
    from torch.func import grad, vmap

    def example_cost(p, x, y):
        return cost(p, x[None], y[None])

    per_example = vmap(grad(example_cost), in_dims=(None, 0, 0))

    def step(p, xb, yb):
        detached = [{k: v.detach() for k, v in layer.items()} for layer in p]
        grads = per_example(detached, xb, yb)
        with torch.no_grad():
            for layer, g in zip(p, grads, strict=True):
                for k in layer:
                    layer[k] -= eta * g[k].mean(dim=0)
        return p

    return step


def vmap_sgd_epoch(step, params, x, labels, batches, n_classes: int = 10):
    import torch.nn.functional as F

    for idx in batches:
        params = step(params, x[idx], F.one_hot(labels[idx], n_classes).float())
    return params
