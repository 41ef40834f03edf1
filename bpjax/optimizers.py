"""Optimizers by name: ``optax`` factories, two presets, learning-rate schedules, clear errors.

    tx = make_optimizer("adam", 1e-2)                            # optax.adam(1e-2)
    tx = make_optimizer("momentum", 0.5)                         # optax.sgd(0.5, momentum=0.9)
    tx = make_optimizer("adamw", 3e-3, weight_decay=1e-4)        # any keyword of optax.adamw
    tx = make_optimizer("sgd", 3.0, schedule="cosine", total_steps=5_000)

A name is one of the presets (``"momentum"``, ``"nesterov"``: optax.sgd with momentum 0.9) or
any optax function whose first argument is ``learning_rate`` (``available_optimizers()``), so a
new optax optimizer is usable by name without touching this file. ``make_optimizer`` also takes
a factory ``(learning_rate, **kwargs) -> GradientTransformation`` or a ready
``optax.GradientTransformation`` (returned as is). Unknown names, unknown keywords and values
the optimizer cannot use raise ``ValueError`` naming what is valid.

For sweeps, ``make_sweep_optimizer`` builds the optimizer with ``optax.inject_hyperparams`` so the
learning rate lives in ``opt_state`` (``set_learning_rate``) and one compiled update serves every
learning rate. A schedule is a multiplier with peak 1 chained after the optimizer: every optax
optimizer applies its learning rate as a final scaling of the update, so this equals scheduling
the learning rate itself.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

Factory = Callable[..., optax.GradientTransformation]

# The optimizers the comparison experiment runs by default, in its order.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")

# Names that are not optax functions: optax.sgd with fixed keywords (overridable).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "momentum": ("sgd", {"momentum": 0.9}),
    "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}),
}

# optax functions whose first argument is learning_rate but that are not plain optimizers here.
_NOT_OPTIMIZERS = {
    "lbfgs": "its update needs the cost function (value_fn) for a line search",
    "scale_by_learning_rate": "a building block (use 'sgd')",
    "scale_by_rprop": "a building block (use 'rprop')",
}

SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")
WARMUP_FRACTION = 0.05  # of total_steps, for "warmup_cosine"


def _is_optax_optimizer(name: str) -> bool:
    fn = getattr(optax, name, None)
    if name.startswith("_") or name in _NOT_OPTIMIZERS or not inspect.isfunction(fn):
        return False
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "learning_rate"


@functools.cache
def available_optimizers() -> tuple[str, ...]:
    """Every name ``make_optimizer`` accepts: the presets and optax's learning-rate optimizers."""
    return tuple(sorted(set(PRESETS) | {n for n in dir(optax) if _is_optax_optimizer(n)}))


def optimizer_factory(name: str) -> Factory:
    """``(learning_rate, **kwargs) -> GradientTransformation`` for a name (presets pre-bound)."""
    if not isinstance(name, str):
        raise TypeError(f"an optimizer name must be a str, got {type(name).__name__}")
    if name in PRESETS:
        base, preset = PRESETS[name]
        return functools.partial(getattr(optax, base), **preset)
    if _is_optax_optimizer(name):
        return getattr(optax, name)
    why = f" ({_NOT_OPTIMIZERS[name]})" if name in _NOT_OPTIMIZERS else ""
    raise ValueError(
        f"unknown optimizer {name!r}{why}; valid names: {', '.join(available_optimizers())}"
    )


def optimizer_kwargs(name: str) -> tuple[str, ...]:
    """The keyword arguments a named optimizer accepts besides ``learning_rate``."""
    params = inspect.signature(optimizer_factory(name)).parameters
    return tuple(p for p in params if p != "learning_rate")


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """ValueError if ``kwargs`` are not keywords of the named optimizer (the message lists them)."""
    if "learning_rate" in kwargs:
        raise ValueError("pass the learning rate as learning_rate=..., not among the kwargs")
    valid = optimizer_kwargs(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid) or '(none)'}"
        )


def check_learning_rate(learning_rate) -> None:
    """A learning rate is a finite number > 0 or a schedule (a callable of the step count)."""
    if callable(learning_rate):
        return
    try:
        value = float(learning_rate)
    except (TypeError, ValueError):
        raise ValueError(
            f"learning_rate must be a number or a schedule, got {learning_rate!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate!r}")


def learning_rate_multiplier(schedule: str, total_steps: int | None = None) -> optax.Schedule:
    """A schedule with peak 1 over ``total_steps`` steps: multiply a peak learning rate by it.

    "constant" 1; "cosine" from 1 to 0; "warmup_cosine" linear from 0 to 1 over the first 5% of
    steps, then cosine to 0; "linear" from 1 to 0.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return optax.constant_schedule(1.0)
    if total_steps is None or int(total_steps) < 1:
        raise ValueError(f"schedule {schedule!r} needs total_steps >= 1, got {total_steps!r}")
    total_steps = int(total_steps)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, total_steps)
    if schedule == "linear":
        return optax.linear_schedule(1.0, 0.0, total_steps)
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(total_steps, warmup + 1))


def _smoke_test(label: str, tx: optax.GradientTransformation) -> None:
    # Trace (never run) one init + update on a tiny pytree, so a keyword of the wrong kind fails
    # here with the optimizer's name rather than later, deep inside a jitted training step.
    params = {"w": jnp.zeros((2, 2)), "b": jnp.zeros((2,))}

    def one_update(p):
        updates, _ = tx.update(p, tx.init(p), p)
        return updates

    try:
        jax.eval_shape(one_update, params)
    except Exception as err:  # noqa: BLE001 - re-raised with context, whatever optax raised
        raise ValueError(
            f"optimizer {label} cannot make an update: {type(err).__name__}: {err}"
        ) from err


def _resolve(optimizer: str | Factory, kwargs: dict[str, Any]) -> tuple[str, Factory]:
    if isinstance(optimizer, str):
        check_kwargs(optimizer, kwargs)
        return repr(optimizer), optimizer_factory(optimizer)
    if isinstance(optimizer, optax.GradientTransformation) or not callable(optimizer):
        raise TypeError(
            "expected an optimizer name or a factory (learning_rate, **kwargs) -> "
            f"GradientTransformation, got {type(optimizer).__name__}"
        )
    return getattr(optimizer, "__name__", repr(optimizer)), optimizer


def make_optimizer(
    optimizer: str | Factory | optax.GradientTransformation,
    learning_rate: float | optax.Schedule | None = None,
    *,
    schedule: str = "constant",
    total_steps: int | None = None,
    l2: float = 0.0,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """An ``optax.GradientTransformation`` from a name (or factory) and a learning rate.

    ``schedule`` (see ``SCHEDULES``) turns a numeric ``learning_rate`` into that schedule's
    peak over ``total_steps``. ``l2`` (lambda) adds ``lambda * theta`` to the gradient first:
    descent on ``C + (lambda/2)|theta|^2`` (``with_l2``). ``kwargs`` go to the optax function
    (e.g. ``b1=0.8``; adamw's own decoupled ``weight_decay`` too). A ready
    ``GradientTransformation`` is returned unchanged (then pass no learning rate or kwargs).
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None or kwargs or schedule != "constant":
            raise ValueError(
                "a ready GradientTransformation takes no learning_rate, schedule or kwargs"
            )
        return optimizer
    if learning_rate is None:
        raise ValueError("make_optimizer needs a learning_rate")
    label, factory = _resolve(optimizer, kwargs)
    check_learning_rate(learning_rate)
    if schedule != "constant":
        if callable(learning_rate):
            raise ValueError("give either a schedule name or a callable learning_rate, not both")
        multiplier = learning_rate_multiplier(schedule, total_steps)
        peak = float(learning_rate)
        learning_rate = lambda count: peak * multiplier(count)  # noqa: E731
    tx = with_l2(factory(learning_rate, **kwargs), l2)
    _smoke_test(label, tx)
    return tx


def with_l2(tx: optax.GradientTransformation, l2: float) -> optax.GradientTransformation:
    """``tx`` applied to the gradient plus ``l2 * theta``: descent on ``C + (l2/2)|theta|^2``
    (L2 regularisation, coupled; unchanged for ``l2 == 0``)."""
    l2 = float(l2)
    if not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
    return tx if l2 == 0 else optax.chain(optax.add_decayed_weights(l2), tx)


def make_sweep_optimizer(
    optimizer: str | Factory,
    *,
    schedule: str = "constant",
    total_steps: int | None = None,
    l2: float = 0.0,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """The optimizer with its learning rate in ``opt_state``, for training many learning rates
    with one compiled update: ``set_learning_rate(tx.init(params), lr)`` picks a run's rate.

    The initial learning rate is 1.0 (times the schedule's multiplier, peak 1).
    """
    label, factory = _resolve(optimizer, kwargs)
    # Only the learning rate is injected; the other options stay Python constants (some
    # optimizers branch on them in Python), so the update is the plain optimizer's arithmetic.
    static = [p for p in inspect.signature(factory).parameters if p != "learning_rate"]
    tx = optax.inject_hyperparams(factory, static_args=static)(learning_rate=1.0, **kwargs)
    if schedule != "constant":
        multiplier = learning_rate_multiplier(schedule, total_steps)
        tx = optax.chain(tx, optax.scale_by_schedule(multiplier))
    tx = with_l2(tx, l2)
    _smoke_test(label, tx)
    return tx


def set_learning_rate(opt_state, learning_rate) -> Any:
    """``opt_state`` of a ``make_sweep_optimizer`` optimizer with its learning rate replaced
    (kept in the state's own dtype). Works under ``jit`` and ``vmap``."""
    current = learning_rate_of(opt_state)
    return optax.tree_utils.tree_set(
        opt_state, learning_rate=jnp.asarray(learning_rate, dtype=current.dtype)
    )


def learning_rate_of(opt_state) -> jax.Array:
    """The peak learning rate stored in a ``make_sweep_optimizer`` optimizer's state."""
    learning_rate = optax.tree_utils.tree_get(opt_state, "learning_rate")
    if learning_rate is None:
        raise ValueError(
            "this optimizer state holds no learning rate; build the optimizer with "
            "make_sweep_optimizer (optax.inject_hyperparams) to sweep learning rates"
        )
    return learning_rate
