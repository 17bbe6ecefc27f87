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


def cuda_device_available() -> bool:
    import ivcr_engine

    return ivcr_engine.build_info().get("cuda_device_count", 0) > 0
