from __future__ import annotations

from pathlib import Path

import pytest

from .isolation import pytest_configure, pytest_runtest_protocol  # noqa: F401  (the ``isolated`` marker)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test material beside the repo (../shared/data); skip when a machine lacks it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_index(shared_data, tmp_path_factory):
    """An index of every shared video (all channels), built once per test session:
    (index folder, ingest report)."""
    from ivcr_engine.index import Ingestor
    from ivcr_engine.models import prepare_models

    prepare_models()
    root = tmp_path_factory.mktemp("shared_index") / "index"
    ing = Ingestor(root)
    report = ing.run([shared_data / "videos"], progress=False)
    ing.store.close()
    return root, report


def cuda_device_available() -> bool:
    import ivcr_engine

    return ivcr_engine.build_info().get("cuda_device_count", 0) > 0


SIMD_NAMES = {0: "scalar", 1: "avx2", 2: "avx512", 3: "amx"}


def available_simd_levels() -> list[int]:
    """Every kernel family this build can run on this CPU: a level counts when forcing it makes
    the core report it (the core clamps a forced level to what the CPU and the build support)."""
    from ivcr_engine import _core

    levels = []
    try:
        for level, name in SIMD_NAMES.items():
            _core.set_simd_level(level)
            if _core.simd_level() == name:
                levels.append(level)
    finally:
        _core.set_simd_level(-1)
    return levels


def simd_level_fixture(request):
    """Body of the per-folder autouse fixtures: run every test of a module once per level."""
    from ivcr_engine import _core

    _core.set_simd_level(request.param)
    assert _core.simd_level() == SIMD_NAMES[request.param]
    yield request.param
    _core.set_simd_level(-1)
