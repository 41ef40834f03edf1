"""The steps/examples trade-off of batch size (McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training").

Training to a fixed target with batch size B (its learning rate tuned) takes S optimisation
steps and E = B S examples. The model says the pairs (S, E) lie on the hyperbola

    (S / S_min - 1) (E / E_min - 1) = 1,

S_min the fewest steps (huge batches) and E_min the fewest examples (tiny batches); the critical
batch size B_crit = E_min / S_min is where both are twice their minimum. Equivalently
S(B) = S_min (1 + B_crit / B) and E(B) = E_min (1 + B / B_crit), so S = S_min + E_min / B is
linear in 1/B: the fit starts from that linear least-squares solution and then minimises the
squared error of log S (the steps span orders of magnitude, and a relative error is what a
measurement of steps has).

    fit = fit_steps_examples(steps, examples)        # arrays of S and E, one entry per B
    fit.s_min, fit.e_min, fit.b_crit
    steps_for_batch(fit, batch_sizes)                 # the model's S(B)
    examples_on_hyperbola(fit, steps)                 # E as a function of S > S_min, to plot
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ScalingFit(NamedTuple):
    """The fitted hyperbola: ``s_min`` steps, ``e_min`` examples, ``b_crit = e_min / s_min``,
    and ``rms_log_error``, the root-mean-square of log(S measured / S fitted)."""

    s_min: float
    e_min: float
    b_crit: float
    rms_log_error: float


def _check_pairs(steps, examples) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(steps, dtype=np.float64).reshape(-1)
    e = np.asarray(examples, dtype=np.float64).reshape(-1)
    if s.shape != e.shape:
        raise ValueError(f"need one E per S: got {s.size} steps and {e.size} examples")
    if s.size < 2:
        raise ValueError(f"fitting S_min and E_min needs at least 2 (S, E) pairs, got {s.size}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(e)) and np.all(s > 0) and np.all(e > 0)):
        raise ValueError("steps and examples must be finite and > 0")
    if np.any(e < s):
        raise ValueError("examples must be >= steps (E = B S with batch size B >= 1)")
    if np.unique(e / s).size < 2:
        raise ValueError("the (S, E) pairs need at least 2 different batch sizes B = E / S")
    return s, e


def _model_steps(s_min: float, e_min: float, inv_b: np.ndarray) -> np.ndarray:
    return s_min + e_min * inv_b


def fit_steps_examples(steps, examples, iterations: int = 200) -> ScalingFit:
    """Fit ``S_min``, ``E_min`` to measured pairs ``steps`` (S,) and ``examples`` (E = B S).

    Minimises ``sum (log S_i - log(S_min + E_min / B_i))^2`` over ``S_min, E_min > 0`` by
    Gauss-Newton in log-parameters, from the linear least-squares fit of S on 1/B. Exact for
    points on a hyperbola. Raises ValueError for fewer than 2 pairs, a single batch size, or
    non-positive values.
    """
    s, e = _check_pairs(steps, examples)
    inv_b = s / e  # 1 / B
    # Start: S = S_min + E_min / B by linear least squares, weighted by 1/S (relative errors).
    design = np.stack([np.ones_like(inv_b), inv_b], axis=1) / s[:, None]
    start, *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    floor = 1e-6 * float(np.min(s))
    theta = np.log(np.maximum(start, [floor, floor * float(np.min(e / s))]))
    for _ in range(int(iterations)):
        s_min, e_min = np.exp(theta)
        fitted = _model_steps(s_min, e_min, inv_b)
        residual = np.log(s) - np.log(fitted)
        # d log(fitted) / d log(s_min), d log(fitted) / d log(e_min)
        jac = np.stack([s_min / fitted, e_min * inv_b / fitted], axis=1)
        step, *_ = np.linalg.lstsq(jac, residual, rcond=None)
        # Damped: a step of at most a factor e in either parameter keeps the iteration stable.
        step = np.clip(step, -1.0, 1.0)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    s_min, e_min = (float(v) for v in np.exp(theta))
    rms = float(np.sqrt(np.mean((np.log(s) - np.log(_model_steps(s_min, e_min, inv_b))) ** 2)))
    return ScalingFit(s_min=s_min, e_min=e_min, b_crit=e_min / s_min, rms_log_error=rms)


def steps_for_batch(fit: ScalingFit, batch_sizes) -> np.ndarray:
    """The model's steps to the target at batch sizes ``batch_sizes``: S_min (1 + B_crit / B)."""
    b = np.asarray(batch_sizes, dtype=np.float64)
    if np.any(b <= 0):
        raise ValueError("batch sizes must be > 0")
    return fit.s_min * (1 + fit.b_crit / b)


def examples_on_hyperbola(fit: ScalingFit, steps) -> np.ndarray:
    """E on the fitted hyperbola at ``steps`` S: ``E_min S / (S - S_min)``; inf for S <= S_min."""
    s = np.asarray(steps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = fit.e_min * s / (s - fit.s_min)
    return np.where(s > fit.s_min, e, np.inf)
