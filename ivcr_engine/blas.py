"""numpy's BLAS threads: one while serving queries, all of them while building derived data.

A turn's numpy products are tiny (a query times a projection basis, a query against 1,000 list
centroids), and OpenBLAS runs even those on all cores, then keeps its workers spinning for a while
after each call: they take the two cores the native scan needs next. On the 1M-clip benchmark
index the text first stage ran almost twice as long right after a "something like this" ranking
as alone, and as fast as alone with BLAS on one thread (docs/BENCHMARKS.md, "Figures moved out of
the code"). An
opened Index therefore limits numpy's BLAS to one thread for the process (``for_queries``), and builds
of first-stage copies and inverted lists (large products over a million rows) take every thread
back while they run (``all_threads``).
"""
from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_state: dict = {}


def _numpy_blas():
    """A controller over numpy's own BLAS (the one under numpy's install, e.g. numpy.libs/), or
    over every BLAS loaded at the first call when none lies there (numpy linked to a system
    BLAS). Other packages' BLAS (faiss's OpenMP OpenBLAS, torch's) keep their threads: limiting
    faiss's would also limit its OpenMP pool, and the baselines that run beside the engine."""
    import os

    import numpy as np
    from threadpoolctl import ThreadpoolController

    with _lock:  # found once: numpy's BLAS is loaded with numpy (scanning the process takes ~16 ms)
        if "blas" not in _state:
            home = os.path.dirname(os.path.realpath(np.__file__))  # .../site-packages/numpy
            blas = ThreadpoolController().select(user_api="blas")
            own = [lib for lib in blas.lib_controllers if os.path.realpath(lib.filepath).startswith(home)]
            if own:
                blas.lib_controllers = own
            _state["blas"] = blas
            _state["full"] = max([lib.num_threads for lib in blas.lib_controllers] or [1])
        return _state["blas"]


def for_queries() -> None:
    """Limit numpy's BLAS to one thread in this process (idempotent; builds use ``all_threads``)."""
    _numpy_blas().limit(limits=1)


@contextlib.contextmanager
def all_threads():
    """Every thread numpy's BLAS had before any limit, for the duration (the limit is restored after)."""
    blas = _numpy_blas()
    with blas.limit(limits=_state["full"]):
        yield
