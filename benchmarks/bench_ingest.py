"""Ingest throughput on the shared videos, with the per-stage breakdown, for the overlapped
pipeline (decode runs one video ahead) against the same work done strictly one stage after
another (the baseline)."""
from __future__ import annotations

import pytest

from ivcr_engine.index import Ingestor
from ivcr_engine.models import prepare_models

TABLE = "ingest (shared videos: 8 files, 66 s of video, 2 s clips)"
_SEC = {}


@pytest.mark.parametrize("mode", ["sequential", "overlapped"])
def test_ingest(benchmark, record, shared_data, tmp_path_factory, mode):
    prepare_models()
    reports = []

    def run():
        ing = Ingestor(tmp_path_factory.mktemp("idx") / "index")
        try:
            reports.append(ing.run([shared_data / "videos"], progress=False, overlap=mode == "overlapped"))
        finally:
            ing.store.close()

    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    best = min(reports, key=lambda r: r.wall_seconds)
    assert not best.failed
    record.put(TABLE, mode, "videos/s", len(best.added) / best.wall_seconds)
    record.put(TABLE, mode, "video s / wall s", best.seconds_of_video / best.wall_seconds)
    for stage, sec in best.stage_seconds.items():
        record.put(TABLE, mode, f"{stage} s", sec)
    record.put(TABLE, mode, "wall s", best.wall_seconds)
    _SEC[mode] = best.wall_seconds
    if mode == "overlapped" and "sequential" in _SEC:
        record.put(TABLE, mode, "x sequential", _SEC["sequential"] / best.wall_seconds)
    record.note(TABLE, "wall s is Ingestor.run() alone; loading the three models happens once before it")
