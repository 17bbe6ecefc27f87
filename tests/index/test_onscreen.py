"""On-screen text as an index channel, on generated videos with English and Chinese text burned in
at known times: timed lines, retrieval by the English text with the line as evidence, the Chinese
text recognised (character error rate), and indexes built without the channel."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ivcr_engine.index import Index, IndexStore, Ingestor
from ivcr_engine.index.video_encoder import clip_grid
from ivcr_engine.index.onscreen import ocr_frame_size, timed_lines
from ivcr_engine.models import prepare_models
from ivcr_engine.models.ocr import TextLine

from .burned_text import Caption, cer, make_video, missing_tools

ENGLISH = Caption(6, 10, "Quarterly revenue grew twelve percent")
SIGN = Caption(0, 4, "Parking entrance closed on Sunday", size=34, y="60")
CHINESE = [Caption(2, 8, "明天下午三点在会议室讨论预算", cjk=True),
           Caption(8, 12, "欢迎参观国家博物馆", cjk=True, size=36, y="50")]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    why = missing_tools()
    if why:
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("burned")
    return {"english": make_video(folder / "revenue_slide.mp4", [ENGLISH], 16),
            "sign": make_video(folder / "parking_sign.mp4", [SIGN], 8),
            "chinese": make_video(folder / "meeting_zh.mp4", CHINESE, 14, size=(854, 480))}


@pytest.fixture(scope="module")
def ocr_index(videos, tmp_path_factory):
    prepare_models()
    root = tmp_path_factory.mktemp("ocr_index") / "index"
    ing = Ingestor(root, speech=False)
    try:
        report = ing.run(list(videos.values()), progress=False)
    finally:
        ing.close()
    assert not report.failed and report.ocr is True and not report.notes
    return root


def ocr_lines(root, path):
    with IndexStore(root) as store:
        v = store.find_video_by_path(str(path))
        return [t for t in store.texts(v["id"]) if t[0] == "ocr"]


def shown_clips(c: Caption, clip_seconds=2.0) -> tuple[float, float]:
    """The clip-grid interval whose clip centres fall inside the caption's time: what the timed
    line can say at best."""
    centres = np.arange(clip_seconds / 2, 100, clip_seconds)
    inside = centres[(centres >= c.start) & (centres < c.end)]
    return float(inside[0] - clip_seconds / 2), float(inside[-1] + clip_seconds / 2)


def test_the_english_text_finds_its_video_with_the_line_as_evidence(ocr_index, videos):
    hits = Index.open(ocr_index).search("revenue grew twelve percent", k=3)
    top = hits[0]
    assert top.path == str(videos["english"])
    assert top.start < ENGLISH.end and top.end > ENGLISH.start  # the moment is where the text is
    ocr = [l for l in top.evidence.lines if l[0] == "ocr"]
    assert len(ocr) == 1
    _, a, b, text = ocr[0]
    # the drawn interval (6-10 s) lies on the clip grid, so the line covers exactly it
    assert (a, b) == shown_clips(ENGLISH) == (ENGLISH.start, ENGLISH.end)
    assert text == ENGLISH.text
    # the other English text finds its own video
    assert Index.open(ocr_index).search("the car park entrance is closed on sundays", k=1)[0].path == str(videos["sign"])


def test_the_chinese_text_is_recognised_with_its_times(ocr_index, videos):
    lines = ocr_lines(ocr_index, videos["chinese"])
    assert len(lines) == len(CHINESE)
    for (_, a, b, text), want in zip(lines, CHINESE):
        assert (a, b) == shown_clips(want)
        assert cer(text, want.text) <= 0.1, (text, want.text)
    total = sum(cer(t, w.text) * len(w.text) for (_, _, _, t), w in zip(lines, CHINESE)) / sum(len(w.text) for w in CHINESE)
    print(f"Chinese CER {total:.3f} over {sum(len(w.text) for w in CHINESE)} characters")


def test_frames_without_text_add_nothing(ocr_index, videos):
    with IndexStore(ocr_index) as store:
        v = store.find_video_by_path(str(videos["english"]))
        rows = np.asarray(store.vectors("ocr")[v["first_row"]:v["first_row"] + v["n_clips"]], np.float32)
    clips = clip_grid(v["duration"], 2.0)
    has_text = (clips[:, 0] >= ENGLISH.start) & (clips[:, 1] <= ENGLISH.end)
    assert np.array_equal(rows[:, -1] == 1.0, has_text)  # the presence dimension
    assert not rows[~has_text].any()
    np.testing.assert_allclose(np.linalg.norm(rows[has_text, :-1], axis=1), 1.0, atol=2e-3)


def test_an_index_without_the_channel_keeps_working_and_says_so(videos, tmp_path):
    """An index as built before OCR (no ocr channel, no ocr settings) opens, searches, and takes
    new videos without on-screen text, saying so; --no-ocr on an index with the channel is an error."""
    prepare_models()
    root = tmp_path / "old"
    ing = Ingestor(root, speech=False, ocr=False)
    ing.run([videos["sign"]], progress=False)
    ing.close()
    with IndexStore(root) as store:  # the settings an index from before this change has
        store.set_settings({k: v for k, v in store.settings().items() if not k.startswith("ocr")})
    ing = Ingestor(root, speech=False)
    report = ing.run([videos["english"]], progress=False)
    ing.close()
    assert report.added == [str(videos["english"])] and report.ocr is False
    assert "no ocr channel" in report.notes[0] and "on-screen text (ocr channel): off" in report.summary()
    index = Index.open(root)
    assert "ocr" not in index.channels
    assert len(index.search("revenue grew twelve percent", k=2)) == 2
    assert not [l for h in index.search("parking", k=2) for l in h.evidence.lines if l[0] == "ocr"]
    Ingestor(tmp_path / "new", speech=False).close()  # a new index gets the channel
    with pytest.raises(ValueError, match="has an ocr channel"):
        Ingestor(tmp_path / "new", speech=False, ocr=False)
    # the command line says it too
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "index", str(videos["chinese"]), "--index", str(root),
                          "--no-speech", "--json"], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["ocr"] is False and "no ocr channel" in got["notes"][0]


def test_timed_lines_merge_consecutive_readings():
    clips = clip_grid(12.0, 2.0)
    L = lambda t: TextLine(t, 0.9, (0, 0, 10, 10))
    per_clip = [[], [L("Hello world"), L("NEWS")], [L("Helloworld"), L("NEWS")], [L("Hello world"), L("NEWS")],
                [L("NEWS")], [L("Hello world")]]
    assert timed_lines(clips, per_clip) == [
        (2.0, 8.0, "Hello world"),  # the reading seen most often; spaces and case do not split a line
        (2.0, 10.0, "NEWS"),
        (10.0, 12.0, "Hello world"),  # gone for a clip: a new line
    ]
    # one character read differently in one frame is still the same line
    per_clip = [[L("Exit 12 Main Street")], [L("Exit 12 Maln Street")], [L("Exit 12 Main Street")], [], [], []]
    assert timed_lines(clips, per_clip) == [(0.0, 6.0, "Exit 12 Main Street")]
    # readings with no letter or digit in any script (a logo's block read as a glyph) are no text
    per_clip = [[L("■"), L("出口")], [L("| --")], [L("15")], [], [], []]
    assert timed_lines(clips, per_clip) == [(0.0, 2.0, "出口"), (4.0, 6.0, "15")]


def test_the_reader_sees_the_displayed_frame_at_its_size():
    assert ocr_frame_size(640, 360) == (352, 640)
    assert ocr_frame_size(1920, 1080) == (352, 640)
    assert ocr_frame_size(176, 144) == (512, 640)    # small videos are scaled up
    assert ocr_frame_size(1280, 720, rotation=90) == (640, 352)
    with pytest.raises(ValueError, match="no frame size"):
        ocr_frame_size(0, 0)
