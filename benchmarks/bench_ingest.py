"""Ingest throughput on the shared videos, with the per-stage breakdown, for the overlapped
pipeline (decode runs one video ahead) against the same work done strictly one stage after
another (the baseline), and with on-screen text (OCR) off; plus what OCR costs on a minute of
video with text on screen all the time (generated captions over a moving background)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ivcr_engine.index import Ingestor
from ivcr_engine.models import prepare_models

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.index.burned_text import Caption, make_video, missing_tools  # noqa: E402

TABLE = "ingest (shared videos: 8 files, 66 s of video, 2 s clips)"
CAPTIONED = "ingest with on-screen text (generated: 60 s, a new caption every 4 s, EN and ZH, 640x360)"
_SEC = {}
MODES = {"sequential": dict(overlap=False, ocr=True), "overlapped": dict(overlap=True, ocr=True),
         "sequential, --no-ocr": dict(overlap=False, ocr=False), "overlapped, --no-ocr": dict(overlap=True, ocr=False)}


def _ingest(benchmark, tmp_path_factory, inputs, ocr, overlap=True, rounds=3):
    prepare_models()
    reports = []

    def run():
        ing = Ingestor(tmp_path_factory.mktemp("idx") / "index", ocr=ocr)
        try:
            reports.append(ing.run(inputs, progress=False, overlap=overlap))
        finally:
            ing.close()

    benchmark.pedantic(run, rounds=rounds, warmup_rounds=0)
    best = min(reports, key=lambda r: r.wall_seconds)
    assert not best.failed
    return best


def _put(record, table, row, best):
    record.put(table, row, "videos/s", len(best.added) / best.wall_seconds)
    record.put(table, row, "video s / wall s", best.seconds_of_video / best.wall_seconds)
    record.put(table, row, "wall s per video-min", best.wall_seconds / best.seconds_of_video * 60)
    for stage, sec in best.stage_seconds.items():
        record.put(table, row, f"{stage} s", sec)
    record.put(table, row, "wall s", best.wall_seconds)


@pytest.mark.parametrize("mode", list(MODES))
def test_ingest(benchmark, record, shared_data, tmp_path_factory, mode):
    best = _ingest(benchmark, tmp_path_factory, [shared_data / "videos"], **MODES[mode])
    _put(record, TABLE, mode, best)
    _SEC[mode] = best.wall_seconds
    if mode == "overlapped" and "sequential" in _SEC:
        record.put(TABLE, mode, "x sequential", _SEC["sequential"] / best.wall_seconds)
    record.note(TABLE, "wall s is Ingestor.run() alone; loading the models happens once before it")
    record.note(TABLE, "ocr s includes decoding the clip-centre frames again at the reader's size (640 long side)")


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    if missing_tools():
        pytest.skip(missing_tools())
    lines = ["Quarterly revenue grew twelve percent", "明天下午三点在会议室讨论预算", "Breaking news: river levels rising",
             "欢迎参观国家博物馆", "Exit 12 Main Street", "The committee approved the new budget"]
    caps = [Caption(t, t + 4, lines[(t // 4) % len(lines)], cjk=(t // 4) % 2 == 1) for t in range(0, 60, 4)]
    caps.append(Caption(0, 60, "LIVE  Markets open higher", size=20, y="20"))  # a ticker on all the time
    return make_video(tmp_path_factory.mktemp("captioned") / "captioned.mp4", caps, 60)


@pytest.mark.parametrize("ocr", [True, False], ids=["ocr", "no-ocr"])
def test_ingest_captioned(benchmark, record, captioned, tmp_path_factory, ocr):
    best = _ingest(benchmark, tmp_path_factory, [captioned], ocr=ocr, rounds=2)
    _put(record, CAPTIONED, "ocr on" if ocr else "--no-ocr", best)
    record.note(CAPTIONED, "the background moves, so every frame is detected; a caption's text is reused from the "
                           "clip before while the pixels of its box stay the same")
