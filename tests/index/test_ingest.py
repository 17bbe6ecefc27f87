"""Ingest and one-shot search on real videos: durations and clip counts, subtitles with their
times, a paraphrased query finding the right moment, bad files, kill -9 in the middle, speech."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine import decode
from ivcr_engine.index import Index, IndexStore, Ingestor, collect_videos, hits_to_json, to_qvhighlights
from ivcr_engine.models import prepare_models


def test_every_shared_video_is_indexed_with_its_duration_and_clips(shared_data, shared_index):
    root, report = shared_index
    videos = sorted((shared_data / "videos").iterdir())
    assert len(report.added) == len(videos) and not report.failed
    with IndexStore(root) as store:
        by_path = {Path(v["path"]).name: v for v in store.videos()}
        assert set(by_path) == {p.name for p in videos}
        for p in videos:
            duration = decode.probe(p).duration
            v = by_path[p.name]
            assert v["duration"] == pytest.approx(duration, abs=1e-6)
            assert v["n_clips"] == math.ceil(duration / 2.0 - 1e-9)
        rows = store.row_count()
        assert rows == sum(v["n_clips"] for v in by_path.values())
        for name, spec in store.channels().items():
            assert store.vectors(name).shape == (rows, spec.dim)


def test_subtitles_are_indexed_with_their_times(shared_index):
    root, _ = shared_index
    with IndexStore(root) as store:
        nasa = next(v for v in store.videos() if v["path"].endswith("nasa_13013.mp4"))
        subs = [t for t in store.texts(nasa["id"]) if t[0] == "subtitle"]
    want = [(s.start, s.end, s.text) for s in decode.read_subtitles(Path(nasa["path"]))]
    assert [(a, b, t) for _, a, b, t in subs] == want
    assert any("cleanroom" in t for _, _, _, t in subs)


def test_a_paraphrase_of_a_subtitle_line_finds_its_moment(shared_index):
    root, _ = shared_index
    index = Index.open(root)
    # the line: "space telescope in one of the largest cleanrooms in the world" at 4.26-8.35 s
    hits = index.search("one of the biggest clean rooms on earth", k=3)
    top = hits[0]
    assert top.path.endswith("nasa_13013.mp4")
    assert top.start < 8.35 and top.end > 4.26
    assert any("cleanrooms" in line[3] for line in top.evidence.lines)
    out = json.loads(hits_to_json(hits))
    assert {"video_id", "start", "end", "score", "rank"} <= set(out[0]) and out[0]["rank"] == 1
    qvh = to_qvhighlights(1, "q", hits)
    assert qvh["vid"] == "nasa_13013" and len(qvh["pred_relevant_windows"][0]) == 3


def test_visual_concepts_reach_silent_videos(shared_index):
    index = Index.open(shared_index[0])
    assert index.search("a parrot", k=1)[0].path.endswith("cockatoo.mp4")
    assert index.search("a dog", k=1)[0].path.endswith("dog_walk.mp4")


def test_reindexing_skips_known_content_and_bad_queries_are_errors(shared_data, shared_index):
    root, _ = shared_index
    ing = Ingestor(root)
    report = ing.run([shared_data / "videos"], progress=False)
    ing.store.close()
    assert not report.added and len(report.skipped) == len(list((shared_data / "videos").iterdir()))
    index = Index.open(root)
    with pytest.raises(ValueError, match="empty"):
        index.search("   ")
    with pytest.raises(ValueError, match="k must"):
        index.search("a dog", k=0)


def test_corrupt_truncated_and_non_video_files_are_reported_and_skipped(shared_data, tmp_path):
    prepare_models()
    folder = tmp_path / "vids"
    folder.mkdir()
    good = folder / "good.mp4"
    shutil.copy(shared_data / "videos" / "carphone_pristine.mp4", good)
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    data = (shared_data / "videos" / "bikes.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 20])
    (folder / "notes.avi").write_text("not a video at all")
    manifest = tmp_path / "list.txt"
    manifest.write_text("# videos\nvids/good.mp4\nvids/noise.mp4\nvids/truncated.mp4\nvids/notes.avi\nvids/missing.mp4\n")
    assert len(collect_videos([manifest])) == 5
    ing = Ingestor(tmp_path / "index")
    report = ing.run([manifest], progress=False)
    ing.store.close()
    failed = dict(report.failed)
    assert report.added == [str(good.resolve())]
    assert {Path(p).name for p in failed} >= {"noise.mp4", "notes.avi", "missing.mp4"}
    assert all(why for why in failed.values())
    with IndexStore(tmp_path / "index") as store:
        # the truncated file either decodes what is there or is reported; never half-written
        assert len(store.videos()) == len(report.added)
        assert store.row_count() == sum(v["n_clips"] for v in store.videos())


def test_kill_9_during_ingest_then_rerun_completes_without_duplicates(shared_data, tmp_path):
    prepare_models()
    root = tmp_path / "index"
    cmd = [sys.executable, "-m", "ivcr_engine", "index", str(shared_data / "videos"), "--index", str(root), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and proc.poll() is None:  # wait for at least one committed video
        try:
            with sqlite3.connect(root / "meta.sqlite") as db:
                committed = db.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
        except sqlite3.Error:
            committed = 0
        if committed >= 2:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with IndexStore(root) as store:
        videos = store.videos()
        hashes = [v["content_hash"] for v in videos]
        assert len(videos) == len(list((shared_data / "videos").iterdir()))
        assert len(set(hashes)) == len(hashes)
        rows = store.row_count()
        assert rows == sum(v["n_clips"] for v in videos)
        for name, spec in store.channels().items():
            assert (root / "vectors" / f"{name}.bin").stat().st_size == rows * spec.dim * 2
    assert Index.open(root).search("a parrot", k=1)[0].path.endswith("cockatoo.mp4")


def make_speech_video(tmp_path, sentences, duration=24.0) -> Path:
    """Generated frames with sentences spoken by espeak-ng at known start times."""
    if not (shutil.which("espeak-ng") and shutil.which("ffmpeg")):
        pytest.skip("espeak-ng and ffmpeg are needed (make installs them)")
    inputs, filters = [], []
    for i, (start, text) in enumerate(sentences):
        wav = tmp_path / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True)
        inputs += ["-i", str(wav)]
        filters.append(f"[{i + 1}:a]aresample=16000,adelay={int(start * 1000)}:all=1[a{i}]")
    mix = "".join(f"[a{i}]" for i in range(len(sentences))) + f"amix=inputs={len(sentences)}:normalize=0[aout]"
    out = tmp_path / "speech.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=10:duration={duration}",
                    *inputs, "-filter_complex", ";".join(filters + [mix]), "-map", "0:v", "-map", "[aout]",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-t", str(duration), str(out)], check=True)
    return out


def test_speech_is_transcribed_and_found_at_its_time(tmp_path):
    prepare_models()
    video = make_speech_video(tmp_path, [(2.0, "We are cooking pasta in the kitchen tonight."),
                                         (14.0, "A red car drives down the street.")])
    ing = Ingestor(tmp_path / "index")
    report = ing.run([video], progress=False)
    ing.store.close()
    assert report.added, report.failed
    index = Index.open(tmp_path / "index")
    lines = index.store.texts(index.videos[0]["id"])
    speech = [l for l in lines if l[0] == "speech"]
    assert any("pasta" in l[3].lower() for l in speech) and any("car" in l[3].lower() for l in speech)
    hit = index.search("an automobile driving along a road", k=1)[0]
    spoken = next(l for l in speech if "car" in l[3].lower())
    assert hit.start < spoken[2] and hit.end > spoken[1]  # the moment overlaps when it was said
    assert 13.0 <= spoken[1] <= 15.5


def test_remove_and_reindex_a_changed_file(shared_data, tmp_path):
    from ivcr_engine.index import to_tvr

    prepare_models()
    folder = tmp_path / "vids"
    folder.mkdir()
    a, b = folder / "a.mp4", folder / "b.mp4"
    shutil.copy(shared_data / "videos" / "carphone_pristine.mp4", a)
    shutil.copy(shared_data / "videos" / "dog_walk.mp4", b)
    root = tmp_path / "index"
    assert subprocess.run([sys.executable, "-m", "ivcr_engine", "index", str(folder), "--index", str(root), "--quiet",
                           "--no-speech"], capture_output=True).returncode == 0
    # b.mp4 changes content: re-indexing replaces its entry instead of adding a second one
    shutil.copy(shared_data / "videos" / "bikes.mp4", b)
    ing = Ingestor(root, speech=False)
    report = ing.run([folder], progress=False)
    ing.store.close()
    assert report.added == [str(b.resolve())] and report.skipped == [str(a.resolve())]
    with IndexStore(root) as store:
        live = {Path(v["path"]).name: v for v in store.videos()}
        assert set(live) == {"a.mp4", "b.mp4"} and live["b.mp4"]["duration"] == pytest.approx(10.0)
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "index", "--index", str(root), "--quiet", "--no-speech",
                          "--remove", str(a)], capture_output=True, text=True)
    assert out.returncode == 0 and "removed 1" in out.stdout
    index = Index.open(root)
    assert len(index) == 1
    hits = index.search("people riding bicycles", k=5)
    assert [Path(h.path).name for h in hits] == ["b.mp4"]  # removed videos never come back
    tvr = to_tvr(7, hits)
    assert tvr["desc_id"] == 7 and tvr["predictions"][0][0] == "b"
    out = subprocess.run([sys.executable, "-m", "ivcr_engine", "search", "--index", str(root), "--json", "bicycles"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)[0]["path"].endswith("b.mp4")


def test_two_stage_video_ranking_equals_the_exact_scan_when_the_shortlist_covers_all(shared_index, monkeypatch):
    import ivcr_engine.index.ranking as searcher

    index = Index.open(shared_index[0])
    exact = [(h.path, round(h.score, 5)) for h in index.search("a parrot on a perch", k=5)]
    monkeypatch.setattr(searcher, "TWO_STAGE_MIN_ROWS", 1)  # force the two-stage path
    monkeypatch.setattr(searcher, "SHORTLIST", 50)          # more than the 8 videos
    two = Index.open(shared_index[0])
    assert [(h.path, round(h.score, 5)) for h in two.search("a parrot on a perch", k=5)] == exact
    assert list((shared_index[0] / "vectors").glob("first.text-*.values.npy"))
    # the folded first-stage channel scores like the weighted sum of the three text channels
    # (through the copy's projection when it has one)
    q = two.encode_query("a parrot on a perch")
    w = {"concept": 1.0, "speech": 0.5, "subtitle": 2.0}
    fq, fw, folded = two.ranking.first_stage_queries(q, w)
    assert set(fq) == {"text"} and fw == {"text": 1.0}
    copy = two.ranking.first_copy("text", folded)
    rows = np.zeros((two.corpus.rows, fq["text"].shape[1]), np.float32)
    for c in w:
        part = w[c] * np.asarray(two.channels[c], np.float32)
        rows[:, :part.shape[1]] += part
    # the copy's directions (a whitened int4 copy's query basis is scaled by their spreads), and
    # its scores up to a per-query constant (a whitened copy is centred: the mean's score is dropped)
    basis = np.eye(rows.shape[1], dtype=np.float32) if copy.basis is None else copy.basis
    basis = basis / np.linalg.norm(basis, axis=0)
    expected = (rows @ basis) @ (fq["text"][0] @ basis)
    got = copy.rows(slice(None)) @ copy.project(fq["text"])[0]
    # int4 steps are 1/7 of a row's peak: measured 0.027 here, on scores spanning 0.83
    atol = 0.02 if copy.values.dtype == np.int8 else 0.05
    np.testing.assert_allclose(got - got.mean(), expected - expected.mean(), atol=atol)
