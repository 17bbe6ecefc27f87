"""The Python path and the engine opened on the suite's shared index, for the tests that hold one
to the other."""
from __future__ import annotations

import pytest

from ivcr_engine.index import Index
from ivcr_engine.native import NativeIndex


@pytest.fixture(scope="module")
def both(shared_index):
    root, _ = shared_index
    py, nat = Index(root), NativeIndex(root)
    yield py, nat
    nat.close()
    py.close()
