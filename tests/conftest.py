from __future__ import annotations

from pathlib import Path

import pytest

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
