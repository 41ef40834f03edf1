"""The experiment runtime: configs as command lines, run directories, checkpoints, signals.

Every experiment is a config (a frozen dataclass built from the shared option pieces in
``options``), a ``run(cfg, ctx)`` that trains and returns its results, and plots drawn from
those results; ``session.main`` does everything else the same way for all of them.
"""

from experiments.runtime.cli import ConfigError, flag
from experiments.runtime.options import (
    DataOptions,
    ModelOptions,
    OptimizerOptions,
    RunOptions,
    TrainingOptions,
)
from experiments.runtime.session import Context, Experiment, RunFailed, main

__all__ = [
    "ConfigError",
    "Context",
    "DataOptions",
    "Experiment",
    "ModelOptions",
    "OptimizerOptions",
    "RunFailed",
    "RunOptions",
    "TrainingOptions",
    "flag",
    "main",
]
