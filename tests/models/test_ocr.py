"""The on-screen text reader (PP-OCRv4 through our own ONNX Runtime sessions and our own pre- and
post-processing) against plain references: rapidocr's whole pipeline on the same frames, OpenCV's
resize, rapidocr's CTC decoder; and its frame-to-frame reuse against reading every frame."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine import decode
from ivcr_engine.models import prepare_models
from ivcr_engine.models.ocr import TextReader, db_boxes, resize_bilinear, respace_latin
from tests.index.burned_text import Caption, cer, make_video, missing_tools

SIZE = (352, 640)  # (h, w): a 640x360 video at the reader's size (ingest's default)
CAPTIONS = [
    Caption(0, 4, "Quarterly revenue grew twelve percent", size=28),
    Caption(0, 4, "明天下午三点在会议室讨论预算", cjk=True, y="40"),
    Caption(4, 8, "Breaking news: river levels rising", size=22, y="h-th-30"),
    Caption(4, 8, "Exit 12 Main Street", size=40, y="60"),
    Caption(8, 12, "欢迎来到北京 Welcome to Beijing", cjk=True, size=26),
]


@pytest.fixture(scope="module")
def reader():
    prepare_models()
    return TextReader(respace=False)


@pytest.fixture(scope="module")
def captions_video(tmp_path_factory) -> Path:
    why = missing_tools()
    if why:
        pytest.skip(why)
    return make_video(tmp_path_factory.mktemp("ocr") / "captions.mp4", CAPTIONS, 12)


def frames(path, times, size=SIZE) -> np.ndarray:
    return decode.decode_frames(path, decode.Timestamps(list(times)), size=size).frames


def test_the_models_are_the_wheels_own_files_with_their_dictionary(reader):
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    src = Path(rapidocr.__file__).parent / "models"
    card = reader.card
    assert card.verify()
    for ours, theirs in (("det.onnx", "ch_PP-OCRv4_det_infer.onnx"), ("rec.onnx", "ch_PP-OCRv4_rec_infer.onnx")):
        assert card.raw["files"][ours] == hashlib.sha256((src / theirs).read_bytes()).hexdigest()
    # blank + the graph's 6623 characters + space = the recogniser's 6625 classes
    assert len(reader.characters) == 6625 and reader.characters[0] == "" and reader.characters[-1] == " "


def test_lines_match_rapidocrs_own_pipeline(reader, captions_video):
    """rapidocr 1.4.4 on the same BGR frames, detecting at the same size (limit_type max, 640)
    and without its angle classifier (ours has none): the same lines in the same order, boxes
    within a few pixels, and the same text on nearly every line (its rotated-rectangle crops and
    OpenCV's uint8 resize differ slightly from ours)."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    engine = rapidocr.RapidOCR(det_limit_type="max", det_limit_side_len=SIZE[1])
    batch = frames(captions_video, [1, 3, 5, 7, 9, 11])
    ours = reader.read(batch)
    same = total = 0
    for frame, lines in zip(batch, ours):
        theirs = engine(np.ascontiguousarray(frame[..., ::-1]), use_cls=False)[0] or []
        assert len(lines) == len(theirs), ([l.text for l in lines], [t[1] for t in theirs])
        for line, (quad, text, _) in zip(lines, theirs):
            q = np.asarray(quad)
            # "within a few pixels", each edge: a 36 px tall caption box 2-3 px off on every side
            # (seen once in a fresh clone's run) is IoU 0.85, so IoU would flake at 0.9
            theirs_box = (q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max())
            assert max(abs(a - b) for a, b in zip(line.box, theirs_box)) <= 4, (line.box, theirs_box)
            assert cer(line.text, text) <= 0.1, (line.text, text)
            same += "".join(line.text.split()) == "".join(text.split())
            total += 1
    assert total == 10 and same >= 8


def test_the_drawn_text_is_read(reader, captions_video):
    lines = TextReader().read(frames(captions_video, [1, 5, 9]))
    want = [[CAPTIONS[1].text, CAPTIONS[0].text], [CAPTIONS[3].text, CAPTIONS[2].text], [CAPTIONS[4].text]]
    for got, texts in zip(lines, want):
        assert len(got) == len(texts)
        for line, text in zip(got, texts):
            assert cer(line.text, text) <= 0.1, (line.text, text)
    # spaces the recogniser dropped between English words are put back
    assert lines[0][1].text == "Quarterly revenue grew twelve percent"


def test_reusing_the_frame_before_gives_what_reading_every_frame_gives(reader, tmp_path):
    """A still background (so frames repeat and the reuse is taken) with a room number that
    changes by one digit: the change must be read, not reused."""
    if missing_tools():
        pytest.skip(missing_tools())
    path = tmp_path / "still.mp4"
    import subprocess

    from tests.index.burned_text import FFMPEG, LATIN_FONT

    draw = lambda t, a, b: (f"drawtext=fontfile={LATIN_FONT}:text='{t}':fontsize=36:fontcolor=white:x=200:y=150:"
                            f"enable='gte(t,{a})*lt(t,{b})'")
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=0x204060:s=640x360:r=25:d=12", "-vf",
                    ",".join([draw("Room 101", 2, 6), draw("Room 104", 6, 10)]), "-c:v", "libx264", str(path)],
                   check=True)
    batch = frames(path, [1, 3, 5, 7, 9, 11])
    calls = []
    detect = reader._detect
    reader._detect = lambda norm: calls.append(len(norm)) or detect(norm)
    try:
        seq = [lines for chunk in reader.read_sequence([batch[:2], batch[2:4], batch[4:]]) for lines in chunk]
    finally:
        del reader._detect
    one_by_one = [reader.read(batch[i:i + 1])[0] for i in range(len(batch))]
    assert [[(l.text, l.box) for l in f] for f in seq] == [[(l.text, l.box) for l in f] for f in one_by_one]
    assert [[l.text for l in f] for f in seq] == [[], ["Room 101"], ["Room 101"], ["Room 104"], ["Room 104"], []]
    assert sum(calls) < len(batch)  # the repeated frames were not detected again


def test_resize_matches_opencv(rng=np.random.default_rng(0)):
    cv2 = pytest.importorskip("cv2")
    for (h, w), (oh, ow) in [((31, 200), (48, 310)), ((96, 500), (48, 250)), ((48, 320), (48, 320)), ((20, 9), (48, 22))]:
        img = rng.random((h, w, 3), dtype=np.float32)
        want = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        got = resize_bilinear(np.ascontiguousarray(img.transpose(2, 0, 1)), oh, ow)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_ctc_decode_matches_rapidocrs_decoder(reader, rng=np.random.default_rng(1)):
    rapidocr = pytest.importorskip("rapidocr_onnxruntime.ch_ppocr_rec.utils")
    decoder = rapidocr.CTCLabelDecode(character=list(reader.characters[1:-1]))
    # peaked random sequences: runs of repeated classes and blanks, as a recogniser gives
    logits = rng.normal(size=(8, 40, len(reader.characters))).astype(np.float32)
    picks = rng.choice([0, 0, 0, 5, 5, 17, 300, 6624], size=(8, 40))
    logits[np.arange(8)[:, None], np.arange(40)[None], picks] += 12
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    want = decoder(probs)
    for p, (text, score) in zip(probs, want):
        got = reader._ctc_decode(p)
        assert got[0] == text and got[1] == pytest.approx(score if text else 0.0, rel=1e-5)


def test_db_boxes_on_a_drawn_probability_map():
    prob = np.zeros((96, 160), np.float32)
    prob[20:30, 10:90] = 0.9      # a text line: found, grown by area * 1.6 / perimeter on each side
    prob[60:62, 10:150] = 0.9     # 2 px tall: thinner than the smallest text, dropped
    prob[70:90, 120:150] = 0.35   # above the pixel threshold but a weak box: dropped
    boxes = db_boxes(prob)
    assert len(boxes) == 1
    x0, y0, x1, y1, score = boxes[0]
    # dilated one pixel right and down: columns 10..90, rows 20..30, 80 x 10 between pixel centres
    d = 80 * 10 * 1.6 / (2 * (80 + 10))
    assert score == pytest.approx(0.9 * (80 * 10) / (81 * 11), rel=1e-5)  # the box's mean probability
    assert (x0, y0, x1, y1) == (round(10 - d), round(20 - d), round(90 + d), round(30 + d)) == (3, 13, 97, 37)


def test_respace_latin_splits_glued_english_only():
    assert respace_latin("Quarterlyrevenuegrewtwelvepercent") == "Quarterly revenue grew twelve percent"
    assert respace_latin("The committee approved thenewbudget today") == "The committee approved the new budget today"
    for kept in ("internationalization", "00:00:01.000", "明天下午三点在会议室讨论预算", "Exit 12 Main Street"):
        assert respace_latin(kept) == kept


def test_bad_frames_are_clear_errors(reader):
    with pytest.raises(ValueError, match="uint8 RGB"):
        reader.read(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="multiples of 32"):
        reader.read(np.zeros((1, 60, 64, 3), np.uint8))
