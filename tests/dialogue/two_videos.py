"""A small index of two shared videos (a cockatoo, on-screen text over NASA footage; no speech
pass), for the LLM responder's tests and benchmarks/bench_llm.py."""
from __future__ import annotations

from pathlib import Path

VIDEOS = ("cockatoo.mp4", "nasa_13013.mp4")


def two_video_index(shared_data: Path, root: Path) -> Path:
    from ivcr_engine.index import Ingestor
    from ivcr_engine.models import prepare_models

    prepare_models()
    ing = Ingestor(root, speech=False)
    ing.run([shared_data / "videos" / name for name in VIDEOS], progress=False)
    ing.store.close()
    return root
