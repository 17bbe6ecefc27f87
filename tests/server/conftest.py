from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")

from .served import Served  # noqa: E402


@pytest.fixture
def serve_process(tmp_path):
    started = []

    def start(index: Path, sessions: Path | None = None, *extra: str) -> Served:
        s = Served(index, sessions or tmp_path / "sessions.sqlite", tmp_path / "serve.log", *extra)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
