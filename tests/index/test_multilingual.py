"""Chinese and English end to end: Chinese queries over English speech (cross-lingual), a video
with a Chinese .srt sidecar, an index built with MiniLM that keeps working, and
`--rebuild-text`, which moves an index's text channels to another model without decoding video."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.index import Index, IndexStore, Ingestor
from ivcr_engine.index.rebuild_text import REBUILD_MARKER, rebuild_text
from ivcr_engine.index.store import IndexDamaged
from ivcr_engine.models import prepare_models

from .test_ingest import make_speech_video

SPOKEN = {
    "sauce": [(2.0, "Today I will show you how to make tomato sauce with fresh tomatoes and garlic.")],
    "train": [(2.0, "The train is leaving the station now.")],
}
SUBTITLES = """1
00:00:02,000 --> 00:00:06,000
今天我们在公园里放风筝。

2
00:00:12,000 --> 00:00:16,000
晚上我们一起包饺子，然后吃饺子。
"""


def ingest(videos, root, text_model=None):
    ing = Ingestor(root, text_model=text_model)
    try:
        report = ing.run(videos, progress=False)
    finally:
        ing.close()
    assert len(report.added) == len(videos), report.failed
    return report


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two English speech videos and one silent video with a Chinese subtitle sidecar."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is needed (make installs it)")
    prepare_models()
    base = tmp_path_factory.mktemp("multilingual")
    videos = {}
    for name, sentences in SPOKEN.items():
        folder = base / name
        folder.mkdir()
        videos[name] = make_speech_video(folder, sentences, duration=10.0).rename(folder / f"{name}.mp4")
    subs = base / "subs"
    subs.mkdir()
    videos["kite"] = subs / "kite.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=20",
                    "-c:v", "libx264", "-preset", "ultrafast", str(videos["kite"])], check=True)
    (subs / "kite.srt").write_text(SUBTITLES, encoding="utf-8")
    return base, videos


@pytest.fixture(scope="module")
def e5_index(corpus):
    base, videos = corpus
    ingest(list(videos.values()), base / "e5")
    return base / "e5"


@pytest.fixture(scope="module")
def minilm_index(corpus):
    base, videos = corpus
    ingest(list(videos.values()), base / "minilm", text_model="text_minilm_l6")
    return base / "minilm"


def top(index, query):
    hit = index.search(query, k=3)[0]
    return Path(hit.path).name, hit


def test_new_indexes_are_multilingual_and_say_so(e5_index):
    with IndexStore(e5_index) as store:
        assert store.settings()["text_model"] == "text_me5_small"
        assert {c.model for n, c in store.channels().items() if n != "visual"} == {"text_me5_small"}


def test_chinese_queries_find_english_speech(e5_index):
    index = Index.open(e5_index)
    assert top(index, "如何做番茄酱")[0] == "sauce.mp4"
    assert top(index, "火车离开车站")[0] == "train.mp4"
    assert top(index, "how to cook a tomato sauce")[0] == "sauce.mp4"


def test_chinese_subtitles_are_found_at_their_time_in_either_language(e5_index):
    index = Index.open(e5_index)
    for query, (a, b) in (("放风筝", (2.0, 6.0)), ("in the evening we make dumplings together and then eat them", (12.0, 16.0))):
        name, hit = top(index, query)
        assert name == "kite.mp4", query
        assert hit.start < b and hit.end > a, (query, hit.start, hit.end)  # the moment overlaps the line
        assert any(line[1] < b and line[2] > a for line in hit.evidence.lines)


def test_a_minilm_index_keeps_working_and_refuses_another_text_model(minilm_index, corpus):
    with IndexStore(minilm_index) as store:
        assert store.settings()["text_model"] == "text_minilm_l6"
    index = Index.open(minilm_index)
    assert index.text_encoder.card.name.startswith("text_minilm_l6")
    assert top(index, "how to cook a tomato sauce")[0] == "sauce.mp4"
    with pytest.raises(ValueError, match="rebuild-text"):
        Ingestor(minilm_index, text_model="text_me5_small")


def test_rebuild_text_moves_an_index_to_the_multilingual_model(minilm_index, e5_index, tmp_path):
    root = tmp_path / "rebuilt"
    shutil.copytree(minilm_index, root)
    reader = Index.open(root)  # a reader open during the rebuild: sees the new model after refresh
    assert reader.text_encoder.card.name.startswith("text_minilm_l6")
    # first-stage copies of the old text rows, folded or of one channel, go with them; others stay
    stale = [root / "vectors" / f"first.{tag}.{reader.corpus.rows}.values.npy" for tag in ("text-concept1-speech1", "speech")]
    kept = root / "vectors" / f"first.visual.{reader.corpus.rows}.values.npy"
    for p in (*stale, kept):
        np.save(p, np.zeros((reader.corpus.rows, 4), np.int8))
    report = rebuild_text(root, "text_me5_small")
    assert not any(p.exists() for p in stale) and kept.exists()
    kept.unlink()
    assert report.previous == ["text_minilm_l6"] and report.rows == reader.corpus.offsets[-1]
    assert reader.refresh() and reader.text_encoder.card.name == "text_me5_small_query"  # its query encoder
    assert top(reader, "如何做番茄酱")[0] == "sauce.mp4"
    fresh, rebuilt = IndexStore(e5_index), IndexStore(root)
    try:
        assert rebuilt.settings()["text_model"] == "text_me5_small"
        assert rebuilt.channels()["speech"].model == "text_me5_small"
        same = {Path(v["path"]).name: v for v in fresh.videos()}
        compared = []
        for v in rebuilt.videos():
            f = same[Path(v["path"]).name]
            rows_new = slice(v["first_row"], v["first_row"] + v["n_clips"])
            rows_ref = slice(f["first_row"], f["first_row"] + f["n_clips"])
            # the same text, the same model: the same rows. The two indexes were ingested apart,
            # and Whisper may word a line differently from one process to another ("Today I
            # will" / "Today we'll"), so only videos whose lines agree are compared (the
            # subtitled one always: its lines come from its .srt)
            if rebuilt.texts(v["id"]) == fresh.texts(f["id"]):
                compared.append(Path(v["path"]).name)
                for channel in ("speech", "subtitle"):
                    np.testing.assert_allclose(np.asarray(rebuilt.vectors(channel)[rows_new], np.float32),
                                               np.asarray(fresh.vectors(channel)[rows_ref], np.float32), atol=2e-3)
                # each line's own vector (moments snap by them) moves to the new model as well
                for x, y in zip(rebuilt.text_lines(v["id"])[1], fresh.text_lines(f["id"])[1]):
                    np.testing.assert_allclose(x, y, atol=2e-3)
            a = np.asarray(rebuilt.vectors("concept")[rows_new], np.float32)
            b = np.asarray(fresh.vectors("concept")[rows_ref], np.float32)
            # rebuilt from the 3 stored classes, where ingest weighs 5: close, not equal (0.87 at
            # worst here, on the flat class guesses of synthetic test patterns)
            cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            assert cos.min() >= 0.8, cos
        assert "kite.mp4" in compared
        assert rebuilt.settings()["line_text_model"] == "text_me5_small"
    finally:
        fresh.close()
        rebuilt.close()
    like_fresh = Index.open(e5_index)
    for query in ("如何做番茄酱", "火车离开车站", "放风筝", "in the evening we make dumplings together and then eat them", "a colourful test pattern"):
        assert top(reader, query)[0] == top(like_fresh, query)[0], query


def test_an_interrupted_rebuild_is_reported_and_finished_by_running_it_again(minilm_index, tmp_path):
    root = tmp_path / "interrupted"
    shutil.copytree(minilm_index, root)
    with IndexStore(root) as store:
        store.set_meta(REBUILD_MARKER, '{"text_model": "text_me5_small"}')
    with pytest.raises(IndexDamaged, match="rebuild-text"):
        Index.open(root)
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "index", "--index", str(root), "--rebuild-text"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "re-embedded with text_me5_small" in out.stdout
    assert top(Index.open(root), "放风筝")[0] == "kite.mp4"



def test_a_chinese_dialogue_is_answered_in_chinese_with_the_ivcr_tokens_verbatim(e5_index):
    from ivcr_engine.dialogue import Engine
    from ivcr_engine.dialogue.responders import parse_ivcr_answer

    session = Engine.open(e5_index).session()
    r = session.ask("找一些关于如何做番茄酱的视频")
    assert r.intent == "video retrieval" and r.text.startswith("意图是视频检索。")
    assert Path(r.candidates[0].path).name == "sauce.mp4" and parse_ivcr_answer(r.text)[0] == 1
    r = session.ask("找放风筝的视频")
    assert Path(r.candidates[0].path).name == "kite.mp4"
    r = session.ask("什么时候包饺子？")
    assert r.intent == "moment retrieval" and r.text.startswith("意图是片段检索。")
    video, span = parse_ivcr_answer(r.text)
    assert span == (round(r.moment.start, 1), round(r.moment.end, 1)) and span[0] < 16.0 and span[1] > 12.0
    assert "字幕" in r.text  # the evidence, worded in Chinese too
    r = session.ask("第99个")
    assert r.text == "共有 3 个候选；请选 1-3。"
    r = session.ask("show me the whole video")  # the user switches language: so does the reply
    assert r.text.startswith("Here is the whole video (video 1): 0.0s-20.0s")
    r = session.ask("2")  # no words: the conversation's language stays
    assert session.state.turns[-1]["lang"] == "en"
