"""Compile time, wherever it happens: the seconds jax spends lowering and compiling programs
(the eager ops' small programs included), taken out of a run's phase and counted as "compile"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

# jax's own duration events for turning a traced program into an executable (jax._src.dispatch).
# Tracing is left out: its events nest (a jit inside a jit is traced inside the outer trace).
EVENTS = (
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@contextlib.contextmanager
def compiling() -> Iterator[list[float]]:
    """``with compiling() as seconds:`` ``seconds[0]`` is the time jax spent compiling inside."""
    seconds = [0.0]

    def listener(event: str, duration: float, **_) -> None:
        if event in EVENTS:
            seconds[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seconds
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@contextlib.contextmanager
def phase(ctx, name: str) -> Iterator[None]:
    """``ctx.phase(name)`` whose compile seconds go to ``ctx.timing["compile"]`` instead."""
    with compiling() as seconds, ctx.phase(name):
        yield
    ctx.timing[name] -= seconds[0]
    ctx.timing["compile"] = ctx.timing.get("compile", 0.0) + seconds[0]
