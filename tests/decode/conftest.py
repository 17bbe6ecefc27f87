from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import media  # noqa: E402


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> dict:
    """Tiny videos made with the ffmpeg CLI once per session: name -> path."""
    if media.FFMPEG is None:
        pytest.skip("ffmpeg CLI not installed")
    return media.generate(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def shared_videos(shared_data) -> list:
    vids = sorted((shared_data / "videos").glob("*"))
    if not vids:
        pytest.skip("no shared videos")
    return vids
