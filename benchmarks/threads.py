"""Thread counts of every library in the benchmark process.

XLA's CPU intra-op pool is sized once, when JAX creates its CPU client, from ``PJRT_NPROC``
(default: all cores), so ``configure`` must run before JAX is used. NumPy's OpenBLAS and PyTorch
can change theirs at run time (``set_blas_threads``, ``torch.set_num_threads``), so a reference
can be timed at several counts in one process.
"""

from __future__ import annotations

import ctypes
import os


def configure(threads: int) -> dict[str, str]:
    """Set the thread environment for XLA, OpenBLAS, OpenMP and MKL (before they load)."""
    env = {
        name: str(threads)
        for name in ("PJRT_NPROC", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    os.environ.update(env)
    return env


def _openblas():
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS)

    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for name in (
            "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def set_blas_threads(threads: int) -> bool:
    """Set NumPy's OpenBLAS thread count now; False if this NumPy's BLAS is not OpenBLAS."""
    setter = _openblas()
    if setter is None:
        return False
    setter(ctypes.c_int(threads))
    return True


def set_threads(threads: int) -> None:
    """NumPy's BLAS and PyTorch (if installed) to ``threads`` threads."""
    set_blas_threads(threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)
