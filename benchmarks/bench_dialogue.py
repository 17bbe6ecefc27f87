"""Per-turn latency of the dialogue engine without an LLM on two synthetic 100k-video / 1M-clip
indexes (the real channel layout; see synthetic_index.py): one of random unit rows, two made of
real encoder outputs (text in MiniLM's space, and in multilingual-e5-small's, the default). Real query text from ActivityNet Captions: p50 and p99 per turn, split into
encode, search, span and respond, and the recall of the two-stage video ranking against the exact
scan, for text queries and for "something like this" (visual) queries. Target: p50 <= 15 ms. On
the default model's corpus also: the whole turns against the Python path the engine replaced, the
text first stage against a plain read of its bytes in the same turns, and the lexical channel's cost.

The indexes (about 4.9 GB each) are built once into .cache/bench/.
"""
from __future__ import annotations

import gc
import json
import os
import time

import numpy as np
import pytest

from ivcr_engine.dialogue import Engine
from ivcr_engine.index import first_stage
from ivcr_engine.index import ranking
from ivcr_engine.index.protocol import dense
from ivcr_engine.models import prepare_models

from synthetic_index import open_index

TABLE = "dialogue turn latency (100k videos / 1M clips, no LLM), ms"


@pytest.fixture(scope="module", params=["gaussian", "encoder", "encoder-e5"])
def engine(request, shared_data):
    prepare_models()
    root = open_index(request.param, shared_data)
    engine = Engine.open(root, prefault=True)  # as `ivcr serve` opens it
    yield request.param, engine
    # unmapped before the next corpus is mapped: three prefaulted 5 GB indexes do not fit this
    # box's page cache together (the second ran 2.5x slower while the first was still mapped)
    engine.index.close()
    del engine
    gc.collect()
    _evict(root)


def _evict(root) -> None:
    """Drop a closed index's files from the page cache, so the next corpus runs as a server with
    only its own index would: with the last one's 5 GB still cached, this VM's DAMON pageout scheme
    reclaimed the next one's rarely read pages (the visual lists: analogous turns ran at 15-17 ms
    p50 instead of 3-5 while the same rankings timed after the dialogue took 3 ms)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


@pytest.fixture(scope="module")
def sentences(shared_data):
    data = json.loads((shared_data / "annotations" / "activitynet_captions" / "val.json").read_text())
    out = []
    for item in list(data.values())[:40]:
        out += [s.strip().rstrip(".") for s in item["sentences"][:2]]
    return out


def _session(sentences, k) -> list[str]:
    """The six turns of a benchmark session, on sentences k and k + 1."""
    return [f"find videos where {sentences[k].lower()}", "the second one", f"when does {sentences[k + 1].lower()}",
            "earlier", "find something like this scene", "show me the whole video"]


def test_turn_latency(engine, sentences, record):
    corpus, engine = engine
    # One untimed session first: it builds the cached int8 first-stage copies (a one-time cost
    # after the index changes) and warms the page cache, as a serving process would before traffic.
    warm = engine.session()
    for t in ("find videos of a dog", "find something like this scene"):
        warm.ask(t)
    per_intent: dict[str, list[dict]] = {}
    # where each turn's ranking spent its time, as the engine reports it (ivcr_results_stage_ms)
    engine.index.ranking_times = stage_times = []
    per_intent_stages: dict[str, list[dict]] = {}
    for k in range(0, len(sentences) - 1, 2):
        s = engine.session()
        for t in _session(sentences, k):
            n = len(stage_times)
            r = s.ask(t)
            per_intent.setdefault(r.intent, []).append(r.timings)
            per_intent_stages.setdefault(r.intent, []).extend(stage_times[n:])
    engine.index.ranking_times = None
    everything = [t for v in per_intent.values() for t in v]
    for name, rows in [("all turns", everything)] + sorted(per_intent.items()):
        name = f"{corpus}: {name}"
        for part in ("encode", "search", "span", "respond", "total"):
            vals = np.array([r.get(part, 0.0) for r in rows]) * 1000
            record.put(TABLE, f"{name} (n={len(rows)})", f"{part} p50", float(np.percentile(vals, 50)))
            if part == "total":
                record.put(TABLE, f"{name} (n={len(rows)})", "total p99", float(np.percentile(vals, 99)))
    record.note(TABLE, "target: p50 <= 15 ms per turn")
    for intent, calls in sorted(per_intent_stages.items()):
        if calls and calls[0]:  # (none from a library that predates ivcr_results_stage_ms)
            parts = ", ".join(f"{part} {np.percentile([c[part] for c in calls], 50):.2f}" for part in calls[0])
            record.note(TABLE, f"{corpus}: {intent}: the engine's ranking, p50 ms per part ({len(calls)} calls): {parts}")
    # The two-stage video ranking against the exact single scan, on the same queries: text
    # queries, and "something like this" queries (a clip's visual row, as the analogous turn uses).
    idx = engine.index
    eligible = ~idx.removed
    rng = np.random.default_rng(1)
    cases = [("text", idx.encode_query(t)) for t in sentences[:40]]
    cases += [("visual", {"visual": np.asarray(idx.channels["visual"][[r]], np.float32)})
              for r in rng.integers(0, idx.corpus.rows, 40)]
    for kind in ("text", "visual"):
        overlap = []
        for _, q in (c for c in cases if c[0] == kind):
            w = {c: 1.0 for c in q if c != "lexical"}
            exact = idx.corpus.topk_videos(dense(q), 10, weights=w, allow=eligible).ids[0]
            two, _ = idx.rank_videos(q, 10, w)
            overlap.append(len(set(exact.tolist()) & set(two[0].tolist())) / 10)
        record.note(TABLE, f"{corpus}: two-stage recall@10 against the exact scan, {kind} queries: "
                           f"{np.mean(overlap):.3f} ({len(overlap)} queries)")
    # What the inverted lists and the coarse copy in front of the visual copy buy (index/
    # inverted_lists.py, first_stage.py), same run, same queries: the "something like this"
    # ranking as built, without the lists (the coarse copy), and with the projected copy alone.
    visual = [q for kind, q in cases if kind == "visual"]
    stage = idx.ranking.first_stage(("visual",), None)
    record.note(TABLE, f"{corpus}: visual first stage: "
                       + (f"{stage.lists.lists} inverted lists, {stage.lists.probe} probed" if stage.lists else "no lists")
                       + (", a coarse copy" if stage.coarse else ", no coarse copy"))
    variants = {"as built": {}, "without lists": {"LISTS_MIN_ELIGIBLE": 2.0},
                "projected copy alone": {"LISTS_MIN_ELIGIBLE": 2.0, "COARSE_MIN_WIDTH": 1 << 30}}
    times = {}
    for name, patch in variants.items():
        saved = {a: getattr(ranking if hasattr(ranking, a) else first_stage, a) for a in patch}
        for a, v in patch.items():
            setattr(ranking if hasattr(ranking, a) else first_stage, a, v)
        idx.ranking.forget_stages()
        try:
            times[name] = _rank_ms(idx, visual)
        finally:
            for a, v in saved.items():
                setattr(ranking if hasattr(ranking, a) else first_stage, a, v)
            idx.ranking.forget_stages()
    base = times["projected copy alone"]
    record.note(TABLE, f"{corpus}: visual ranking p50 ({len(visual)} queries, same run): "
                       + ", ".join(f"{n} {t:.1f} ms ({base / t:.2f}x)" for n, t in times.items()))


BEFORE_AFTER_TABLE = "whole turns: the Python path the engine replaced against the engine (1M clips, encoder-e5), ms"


def test_turns_python_path_against_the_engine(engine, sentences, record):
    """Issue 24's before/after in one run: the same sessions asked twice, turn by turn in
    alternation, once on the engine (``Index`` on libivcr) and once with the index's ranking,
    moments and evidence answered by the Python path the engine replaced (kept as the suite's
    reference, tests/engine/reference_*.py: its first stage over the same copies, then its exact
    stage and its moments in NumPy). Encoding, routing and replies are the same code both times."""
    corpus, engine = engine
    if corpus != "encoder-e5":
        pytest.skip("measured on the default model's corpus")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ivcr_engine.index.protocol import query_rows
    from tests.engine.reference_ranking import reference_rank, reference_shortlists
    from tests.engine.reference_search import Reference

    idx = engine.index
    ref = Reference(idx)

    def staged_rank(queries, k, weights=None, allow=None, deny=None):
        rows = query_rows(queries)
        w = idx._weights(rows, weights)
        eligible = idx._eligible(idx._view, allow, deny)
        short = reference_shortlists(idx.ranking, dense(rows), {c: w[c] for c in dense(rows)}, k, eligible)
        return reference_rank(idx.mapped, ref.lexical, rows, w, int(k), eligible, short, ref.ref_of)

    python_path = {"rank_videos": staged_rank, "moments": ref.moments,
                   "evidence": lambda video, start, end, queries=None, weights=None: ref.evidence(
                       video, start, end, queries, weights)}
    times: dict[str, dict[str, list]] = {"Python path": {}, "engine": {}}
    for k in range(0, len(sentences) - 1, 2):
        turns = _session(sentences, k)
        for mode in (("engine", "Python path") if k % 4 == 0 else ("Python path", "engine")):
            for name, fn in python_path.items():
                if mode == "Python path":
                    setattr(idx, name, fn)
                else:
                    idx.__dict__.pop(name, None)
            s = engine.session()
            for t in turns:
                r = s.ask(t)
                times[mode].setdefault(r.intent, []).append(r.timings)
    for name in python_path:
        idx.__dict__.pop(name, None)
    for intent in sorted(times["engine"]):
        row = f"{intent} (n={len(times['engine'][intent])})"
        p50 = {}
        for mode in ("Python path", "engine"):
            for part in ("search", "span", "total"):
                vals = np.array([r.get(part, 0.0) for r in times[mode][intent]]) * 1000
                p50[(mode, part)] = float(np.percentile(vals, 50))
                record.put(BEFORE_AFTER_TABLE, row, f"{mode}: {part} p50", p50[(mode, part)])
        record.put(BEFORE_AFTER_TABLE, row, "total speed-up", p50[("Python path", "total")] / p50[("engine", "total")])
    record.note(BEFORE_AFTER_TABLE, "the two alternate session by session; encoding is the same ONNX E5 path in both")


FLOOR_TABLE = "a turn's first stage against the memory floor in the same turns (1M clips, encoder-e5), ms"


def test_first_stage_against_the_floor_in_turns(engine, sentences, host_programs, record):
    """The text first stage of each video-retrieval turn against a plain read of as many bytes as
    its copy holds, from memory of its own, done by the engine's thread count right before that
    turn's ranking (benchmarks/turn_floor.cpp): the same sessions as test_turn_latency. Back to back
    (memory_floor.cpp, bench_engine.py) the bytes may still sit in the last-level cache; in a turn,
    the encoder and the turns since the last ranking have run, and both reads get what memory
    gives at that point of a turn. The engine's scan reads each byte once, in order, so its time in
    a turn can be no less than this read's; the ratio is what its arithmetic and its per-video
    maxima add. (Its first stage here runs right after the floor's read of as many other bytes;
    test_turn_latency times it undisturbed.)"""
    import ctypes

    corpus, engine = engine
    if corpus != "encoder-e5":
        pytest.skip("measured on the default model's corpus")
    idx = engine.index
    copy = next(p for p in (idx.store.root / "vectors").glob("first.text-*.values.npy") if ".folded." not in p.name)
    path = str(copy).encode()
    lib = ctypes.CDLL(str(host_programs / "libivcr_turn_floor.so"))
    lib.ivcr_turn_floor_ms.restype = ctypes.c_double
    lib.ivcr_turn_floor_ms.argtypes = [ctypes.c_char_p, ctypes.c_int]
    threads = int(os.environ.get("IVCR_NUM_THREADS") or os.cpu_count() or 1)  # as the engine's pool
    assert lib.ivcr_turn_floor_ms(path, threads) > 0  # (its own copy made here, untimed)
    floor: list[float] = []
    rank_videos = idx.rank_videos

    def read_first(queries, *args, **kw):  # a text query's ranking: the floor read just before it
        if "concept" in queries:
            floor.append(lib.ivcr_turn_floor_ms(path, threads))
        return rank_videos(queries, *args, **kw)

    idx.rank_videos = read_first
    idx.ranking_times = stage_times = []
    first = []
    try:
        for k in range(0, len(sentences) - 1, 2):
            s = engine.session()
            for t in _session(sentences, k):
                n = len(stage_times)
                if s.ask(t).intent == "video retrieval":
                    first.append(stage_times[n]["first"])
    finally:
        idx.__dict__.pop("rank_videos", None)
        idx.ranking_times = None
    row = f"video retrieval (n={len(first)}), {copy.stat().st_size / 1e6:.0f} MB copy, {threads} threads"
    record.put(FLOOR_TABLE, row, "first stage p50", float(np.percentile(first, 50)))
    record.put(FLOOR_TABLE, row, "floor read p50", float(np.percentile(floor, 50)))
    record.put(FLOOR_TABLE, row, "first stage / floor", float(np.percentile(first, 50) / np.percentile(floor, 50)))
    record.note(FLOOR_TABLE, "the floor: a plain read of as many bytes, in memory of its own, right before each "
                             "turn's ranking (benchmarks/turn_floor.cpp); both in the same turns")


def _rank_ms(idx, queries) -> float:
    """p50 ms of ``rank_videos`` for visual queries, after one untimed call (builds any copy)."""
    w = {"visual": 1.0}
    idx.rank_videos(queries[0], 10, w)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        idx.rank_videos(q, 10, w)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000


LEXICAL_TABLE = "lexical channel cost per turn (100k videos / 1M clips, ~600k timed lines), ms"


def test_lexical_cost(engine, sentences, record):
    """What the lexical channel adds to a turn, same run, same queries, on the default model's
    corpus (its ~600k lines are real annotation sentences: synthetic_index._ensure_lines): each
    video- and moment-retrieval turn asked with the channel off, with the engine finding the
    query's lines (the default since issue 24) and with the Python search that found them before
    (tests/engine/reference_lexical.py, its matches handed to the engine), in rotating order.
    Every text is new to both (neither answers from the lines it keeps per text); "cold" also
    starts each turn without the counts of which words are common in the index (a serving
    process keeps those for its snapshot's life: "warm"); the engine's cold turns run on a fresh
    view (which has counted no word), warmed first by a word in no line."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.engine.native_queries import python_matches as matches_of
    from tests.engine.reference_lexical import LexicalSearch

    corpus, engine = engine
    if corpus != "encoder-e5":
        pytest.skip("measured on the default model's corpus")
    index = engine.index
    assert index.store.lexical_ready() and index.store.db.execute(
        "SELECT count(*) FROM texts").fetchone()[0] > 100_000
    python = LexicalSearch(index.store)
    ref_of = {int(v["id"]): r for r, v in enumerate(index.videos)}

    def python_matches(queries):  # the Python path's Index._lexical, as it was
        texts = queries.get("lexical")
        return None if texts is None else [matches_of(python, ref_of, str(t)) for t in np.asarray(texts).reshape(-1)]

    turns = [(f"find videos where {sentences[k].lower()}", f"when does {sentences[k + 1].lower()}")
             for k in range(0, len(sentences) - 1, 2)]
    modes = ("off", "python", "engine")
    for state in ("warm", "cold"):
        times: dict[str, dict[str, list]] = {m: {} for m in modes}
        for i, (find, when) in enumerate(turns):
            for mode in modes[i % 3:] + modes[:i % 3]:
                index.__dict__.pop("_lexical", None)
                if mode == "off":  # the index hands the engine no lexical channel
                    index._lexical = lambda queries: None
                elif mode == "python":
                    index._lexical = python_matches
                    python.forget(counts=state == "cold")
                elif state == "cold":  # a fresh view, warmed by a word in no line: its first stage
                    # resident and the index's line count read (the Python search keeps both too)
                    index._view = index._make_view(index._view.mapped.snapshot)
                    index.rank_videos({**dense(index.encode_queries([find])), "lexical": np.array(["qzxvjw"])}, 10)
                s = engine.session()
                for t in (find, when):
                    r = s.ask(t)
                    times[mode].setdefault(r.intent, []).append(r.timings)
        index.__dict__.pop("_lexical", None)
        for intent in sorted(times["off"]):
            p50 = {}
            row = f"{state}: {intent} (n={len(times['off'][intent])})"
            for mode in modes:
                for part in ("search", "span", "total"):
                    vals = np.array([r.get(part, 0.0) for r in times[mode][intent]]) * 1000
                    p50[(mode, part)] = float(np.percentile(vals, 50))
                    record.put(LEXICAL_TABLE, row, f"{mode}: {part} p50", p50[(mode, part)])
            for mode in ("python", "engine"):
                record.put(LEXICAL_TABLE, row, f"added by {mode}: total p50", p50[(mode, "total")] - p50[("off", "total")])
    record.note(LEXICAL_TABLE, "off / Python lexical search / the engine's, rotating turn by turn; target: the added "
                               "turn latency <= 2 ms p50")
