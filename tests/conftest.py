"""Strict numerics for every test: implicit rank promotion raises, so shape bugs cannot hide.

The suite compiles thousands of small programs and few run long, so it asks XLA's CPU backend
for its cheap code generation (no expensive LLVM passes, the older fusion emitters): about half
the compile time; fast-math stays off. Experiments and benchmarks keep XLA's defaults. Set
BPJAX_TEST_XLA_DEFAULTS=1 to run the suite with them too.

One persistent compilation cache for the session, in a temporary directory: the xdist workers
and the experiments the tests start as subprocesses compile many of the same programs (every run
of an experiment compiles its steps and evaluation again), and a program compiled once is read
back after that. (No size limit: with one, jax rescans the whole directory on every write.)
Set JAX_COMPILATION_CACHE_DIR yourself to keep one across sessions.

Full MNIST for the tests: ../shared/data/mnist beside the checkout, if it exists and
$BPJAX_DATA_DIR is not already set (the library itself never looks there).
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_CHEAP_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    " --xla_cpu_use_fusion_emitters=false"
)
if not os.environ.get("BPJAX_TEST_XLA_DEFAULTS"):  # before jax starts its backend; subprocesses too
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_CHEAP_COMPILE}".strip()

# Made by the controller; the workers and the subprocesses inherit the variables.
if not os.environ.get("PYTEST_XDIST_WORKER") and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="bpjax-tests-jax-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

# jax reads these variables when it is imported; a plugin may have imported it before this file.
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")),
)

_SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
if _SHARED_MNIST.is_dir():
    os.environ.setdefault("BPJAX_DATA_DIR", str(_SHARED_MNIST))

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled (for tight gradient agreement)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    """The tests' PRNG key; derive others from it with split or fold_in."""
    return jax.random.key(0)


@pytest.fixture
def strict_dtypes():
    """No implicit dtype promotion in the test body (a float32 op meeting a float64 one raises).

    Used by the modules of bpjax's pure core (``pytestmark``); not suite-wide, because optax's
    adaptive optimizers (adam's bias correction: a Python float to the power of an int32 step
    count) need standard promotion.
    """
    with jax.numpy_dtype_promotion("strict"):
        yield


# The modules holding the suite's longest tests (end-to-end runs, 8-device subprocesses, the
# TFDS preparation), run first, longest first: pytest-xdist hands each worker a contiguous
# share of the collection and steals from the end of a queue, so a long test collected last
# would leave the other core idle at the end. Within these modules the slow tests go first.
# Every other module keeps its place after them; a name missing here costs only a longer tail.
LONGEST_FIRST = (
    "test_benchmarks.py",
    "test_data_tfds.py",
    "test_sweep.py",
    "test_distributed.py",
    "test_seeing_backprop.py",
    "test_gd_vs_sgd.py",
    "test_notebook.py",
    "test_compare_optimizers.py",
    "test_runtime.py",
    "test_minibatch_noise.py",
    "test_batch_size.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        if name not in LONGEST_FIRST:
            return (len(LONGEST_FIRST), 0)
        return (LONGEST_FIRST.index(name), 0 if item.get_closest_marker("slow") else 1)

    items.sort(key=rank)  # stable: each module's tests keep their order within a rank
