"""`ivcr check [--repair]` and damaged-index messages: uncommitted tails, truncated row files,
bad clip times, NaN rows and derived first-stage caches; repair never touches committed rows."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from ivcr_engine.cli import main
from ivcr_engine.index import ChannelSpec, Index, IndexStore
from ivcr_engine.index import first_stage
from ivcr_engine.index.check import check_index
from ivcr_engine.index.store import IndexDamaged

from . import concurrency_worker as worker


def make(tmp_path, n=6):
    root = tmp_path / "idx"
    worker.create(root)
    with IndexStore(root) as s:
        for i in range(1, n):
            s.add_video(worker.record(i))
    return root


def committed_bytes(root) -> bytes:
    with IndexStore(root) as s:
        n = s.row_count()
        return s.vector_path("visual").read_bytes()[:n * worker.DIM * 2]


def test_a_healthy_index_checks_clean(tmp_path, capsys):
    root = make(tmp_path)
    assert main(["check", "--index", str(root)]) == 0
    assert "index is consistent" in capsys.readouterr().out


def test_an_uncommitted_tail_is_reported_and_trimmed(tmp_path, capsys):
    root = make(tmp_path)
    before = committed_bytes(root)
    with open(root / "vectors" / "visual.bin", "ab") as f:
        f.write(b"\x07" * 100)
    assert Index.open(root).corpus.rows > 0  # readers ignore the tail
    assert main(["check", "--index", str(root)]) == 1
    out = capsys.readouterr().out
    assert "visual.bin: 100 bytes past the" in out and "ivcr check --repair" in out
    assert main(["check", "--index", str(root), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "trimmed 100 uncommitted bytes" in out and "index is consistent" in out
    assert committed_bytes(root) == before


def test_a_truncated_row_file_names_the_file_and_the_repair(tmp_path, capsys):
    root = make(tmp_path)
    path = root / "vectors" / "visual.bin"
    path.write_bytes(path.read_bytes()[:-1024])  # truncate -s -1024
    with pytest.raises(IndexDamaged, match=rf"index {root} is damaged: {path} holds .* bytes, but its .* committed "
                                           rf"rows need .*; run `ivcr check --index {root} --repair`"):
        Index.open(root)
    assert main(["search", "--index", str(root), "anything"]) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err and "visual.bin" in err and "mmap length" not in err
    report = check_index(root)
    assert not report.ok and any("committed rows" in p and "are lost" in p for p in report.problems)
    report = check_index(root, repair=True)
    assert report.ok, report.problems
    assert report.lost_videos  # the videos whose rows were cut off, named, marked removed
    index = Index.open(root)
    live = {v["path"] for v in index.videos if not v["removed"]}
    assert live and not live & set(report.lost_videos)
    assert all(h.path in live for h in index.search(worker.query(), k=10, weights={"visual": 1.0}))


def test_bad_clip_times_and_nan_rows_are_reported(tmp_path):
    root = make(tmp_path)
    times = np.memmap(root / "vectors" / "clip_times.f8", dtype=np.float64, mode="r+")
    times[3] = 99.0
    times.flush()
    vec = np.memmap(root / "vectors" / "visual.bin", dtype=np.float16, mode="r+")
    vec[5] = np.nan
    vec.flush()
    problems = "\n".join(check_index(root).problems)
    assert "clip times differ from the clips table (first at row 1)" in problems
    assert "row 0 has NaN or infinite values" in problems


def test_broken_line_vectors_are_reported_and_dropped(tmp_path):
    root = tmp_path / "idx"
    with IndexStore(root, create=True) as s:
        s.ensure_channel(ChannelSpec("concept", 4))
        rec = worker.record(1)
        rec.vectors = {"concept": np.eye(len(rec.clip_times), 4, dtype=np.float32)}
        rec.texts = [("speech", 0.5, 1.5, "one"), ("speech", 2.0, 3.0, "two"), ("subtitle", 3.0, 3.5, "three")]
        rec.text_vectors = np.eye(3, 4, dtype=np.float32)
        s.add_video(rec)
        s.db.execute("UPDATE texts SET vec = ? WHERE text = 'two'", (np.ones(3, np.float16).tobytes(),))
        s.db.execute("UPDATE texts SET vec = ? WHERE text = 'three'", (np.full(4, np.inf, np.float16).tobytes(),))
    problems = check_index(root).problems
    assert problems == ["2 text line vector(s) are broken (first: video 1, 6 bytes, not 4 x 2)"]
    fixed = check_index(root, repair=True)
    assert fixed.ok and "dropped" in fixed.repaired[0]
    with IndexStore(root) as s:
        lines, vecs, _ = s.text_lines(1)
    assert [l[3] for l in lines] == ["one", "two", "three"]  # the lines stay, as evidence
    assert vecs[0] is not None and vecs[1] is None and vecs[2] is None
    np.testing.assert_array_equal(vecs[0], [1, 0, 0, 0])


def test_derived_caches_stale_broken_and_rebuilt(tmp_path):
    root = make(tmp_path)
    with IndexStore(root) as s:
        rows = s.row_count()
        data = np.asarray(s.vectors("visual"), np.float32)
    read = lambda sel: data[sel]  # noqa: E731
    first_stage.load_or_build(root / "vectors", "visual", rows, worker.DIM, read)
    # an older generation left behind (built aside: beside a later one, load_or_build borrows that one's rows)
    aside = tmp_path / "aside"
    aside.mkdir()
    first_stage.load_or_build(aside, "visual", rows - 3, worker.DIM, lambda sel: data[:rows - 3][sel])
    for p in aside.glob("first.*.npy"):
        shutil.copy(p, root / "vectors" / p.name)
    np.save(root / "vectors" / f"first.visual.{rows}.scales.npy", np.zeros(rows - 1, np.float32))  # broken
    report = check_index(root)
    text = "\n".join(report.problems)
    assert f"stale (built for {rows - 3} rows" in text and "expected" in text
    report = check_index(root, repair=True)
    assert report.ok, report.problems
    assert any("rebuilt" in r for r in report.repaired)
    assert not list((root / "vectors").glob(f"first.visual.{rows - 3}.*"))
    again = first_stage.load_or_build(root / "vectors", "visual", rows, worker.DIM, read)
    assert again.scales.shape == (rows,) and check_index(root).ok


def test_a_packed_int4_copy_is_a_valid_cache(tmp_path):
    """The folded text copy may be whitened int4 (first_stage.checked_encoding): the check takes
    its packed values (two dims a byte) as they are, and still catches a projection that does not
    match them."""
    root = make(tmp_path)
    with IndexStore(root) as s:
        rows = s.row_count()
    rng = np.random.default_rng(0)
    enc = first_stage.Encoding(4, rng.standard_normal((worker.DIM, 32)).astype(np.float32))
    first_stage.load_or_build(root / "vectors", "text-concept1-speech1", rows, worker.DIM,
                              lambda sel: rng.standard_normal((len(np.arange(rows)[sel]), worker.DIM)).astype(np.float32),
                              fit=lambda: enc)
    assert np.load(root / "vectors" / f"first.text-concept1-speech1.{rows}.values.npy").dtype == np.uint8
    assert check_index(root).ok, check_index(root).problems
    np.save(root / "vectors" / f"first.text-concept1-speech1.{rows}.basis.npy", np.zeros((worker.DIM, 16), np.float32))
    assert "projection has 16 dims but the values 32" in "\n".join(check_index(root).problems)


def test_check_refuses_while_an_ingest_holds_the_write_lock(tmp_path):
    root = make(tmp_path)
    with IndexStore(root) as writer, writer.write_lock():
        with pytest.raises(RuntimeError, match="is being written"):
            check_index(root, repair=True)
    assert check_index(root).ok


def test_a_copy_being_built_is_not_taken_for_a_leftover(tmp_path):
    """A search building a first-stage copy holds its build lock (first_stage.building); its
    half-written values are then work in progress, not a killed build's leftovers, and
    ``--repair`` must leave them alone. Released, the same file is reported and removed."""
    root = make(tmp_path)
    with IndexStore(root) as s:
        rows = s.row_count()
    half = root / "vectors" / f"first.visual.{rows}.values.tmp.npy"
    np.save(half, np.zeros((rows, 4), np.int8))
    with first_stage.building(root / "vectors", "first.visual"):
        report = check_index(root, repair=True)
        assert report.ok and not report.repaired and half.exists()
    assert "half-written" in "\n".join(check_index(root).problems)
    assert check_index(root, repair=True).ok and not half.exists()
