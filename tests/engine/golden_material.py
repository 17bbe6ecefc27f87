"""Golden outputs (issue 24): what the Python path answered, recorded in files, so the engine is
held to stored numbers as well as to the live reference (reference_*.py), which could drift with
it. Each material is rebuilt the same way on any CPU: no encoder runs when a test rebuilds it,
because the rows themselves are stored (ONNX Runtime's and Whisper's outputs differ slightly
between CPUs; a rebuilt index does not).

- ``shared``: the index of every shared video as ingest wrote it (rows, clip times, lines with
  their vectors, concepts: golden/shared_index.npz and .json), and the Python path's query rows
  for real annotation queries, their Chinese versions and quotes of the index's own lines, with
  the lexical channel.
- ``synthetic``: the benchmark's gaussian corpus at a test's scale (1,000 videos x 10 clips of
  seeded random unit rows, the real text dims), ranked through the staged path (its first stage
  lowered to 5,000 clips) by queries near chosen clips; the Python path's answer is the exact one.

Recording: ``python -m tests.engine.golden_material record SHARED_INDEX`` (SHARED_INDEX: an index of
../shared/data/videos, as the suite's ``shared_index`` builds it) answers every golden query with
the Python path (reference_search.py) and writes golden/*.json; test_golden.py holds the engine,
and the reference itself, to them.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from ivcr_engine.index import ChannelSpec, Index, IndexStore, VideoRecord
from ivcr_engine.index import ranking as first_stages

GOLDEN = Path(__file__).parent / "golden"
SYNTHETIC_VIDEOS, SYNTHETIC_CLIPS = 1_000, 10
SYNTHETIC_DIMS = {"visual": 256, "concept": 384, "speech": 385}
SYNTHETIC_TWO_STAGE = 5_000  # clips from which the synthetic index ranks in two stages
SCORE_TOL = 1e-5            # the issue's tolerance on scores; moments' edges and line matches: 1e-4


# ---- the shared videos' index, stored ------------------------------------------------------

def dump_index(root: Path, out: Path) -> None:
    """Store an index's rows, clip times, lines (with their vectors) and concepts as
    ``out``.npz + ``out``.json, from which ``build_index`` writes the same index again."""
    with IndexStore(root) as store:
        videos = store.videos(include_removed=True)
        if any(v["removed"] for v in videos):
            raise ValueError("dump an index without removed videos")
        chans = store.channels()
        arrays = {f"rows.{c}": np.asarray(store.vectors(c)) for c in chans}
        arrays["clip_times"] = np.asarray(store.clip_times())
        line_vectors, meta = [], []
        for v in videos:
            lines, vecs, _ = store.text_lines(v["id"])
            if any(x is None for x in vecs) and not all(x is None for x in vecs):
                raise ValueError(f"video {v['path']}: some lines have vectors, some not")
            line_vectors += [x for x in vecs if x is not None]
            meta.append({"path": "videos/" + Path(v["path"]).name, "content_hash": v["content_hash"],
                         "duration": v["duration"], "fps": v["fps"], "width": v["width"], "height": v["height"],
                         "info": json.loads(v["info"]) if v["info"] else {}, "n_clips": v["n_clips"],
                         "lines": [list(l) for l in lines], "line_vectors": bool(lines) and vecs[0] is not None,
                         "concepts": store.concepts(range(v["first_row"], v["first_row"] + v["n_clips"]))})
        arrays["line_vectors"] = np.asarray(line_vectors, np.float16) if line_vectors else np.zeros((0, 1), np.float16)
        spec = {"settings": store.settings(), "videos": meta,
                "channels": [{"name": s.name, "dim": s.dim, "dtype": s.dtype, "model": s.model,
                              "model_sha256": s.model_sha256} for s in chans.values()]}
    np.savez_compressed(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")


def build_index(stored: Path, root: Path) -> Path:
    """Write the index ``dump_index`` stored into the empty folder ``root``."""
    spec = json.loads(stored.with_suffix(".json").read_text())
    arrays = np.load(stored.with_suffix(".npz"))
    records, row, line = [], 0, 0
    for v in spec["videos"]:
        n, m = v["n_clips"], len(v["lines"])
        text_vectors = None
        if v["line_vectors"]:
            text_vectors, line = arrays["line_vectors"][line:line + m].astype(np.float32), line + m
        records.append(VideoRecord(
            path=v["path"], content_hash=v["content_hash"], duration=v["duration"],
            clip_times=arrays["clip_times"][row:row + n],
            vectors={c["name"]: arrays[f"rows.{c['name']}"][row:row + n].astype(np.float32) for c in spec["channels"]},
            texts=[tuple(l) for l in v["lines"]], text_vectors=text_vectors, top_concepts=v["concepts"],
            fps=v["fps"], width=v["width"], height=v["height"], info=v["info"]))
        row += n
    with IndexStore(root, create=True) as store:
        store.set_settings(spec["settings"])
        for c in spec["channels"]:
            store.ensure_channel(ChannelSpec(**c))
        store.add_videos(records)
    return root


# ---- the benchmark's corpus at a test's scale ---------------------------------------------------

def build_synthetic(root: Path) -> Path:
    """benchmarks/synthetic_index.py's gaussian corpus, small: seeded random unit rows."""
    rng = np.random.default_rng(24)
    times = np.stack([np.arange(SYNTHETIC_CLIPS) * 2.0, np.arange(SYNTHETIC_CLIPS) * 2.0 + 2.0], 1)
    with IndexStore(root, create=True) as store:
        store.set_settings({"clip_seconds": 2.0, "text_model": "text_me5_small"})
        for name, dim in SYNTHETIC_DIMS.items():
            store.ensure_channel(ChannelSpec(name, dim))
        rows = {c: _unit(rng.standard_normal((SYNTHETIC_VIDEOS * SYNTHETIC_CLIPS, d))) for c, d in SYNTHETIC_DIMS.items()}
        store.add_videos([VideoRecord(f"/synthetic/{i}.mp4", f"syn-{i}", 2.0 * SYNTHETIC_CLIPS, times,
                                      {c: r[i * SYNTHETIC_CLIPS:(i + 1) * SYNTHETIC_CLIPS] for c, r in rows.items()})
                          for i in range(SYNTHETIC_VIDEOS)])
    return root


def synthetic_queries(index: Index, n: int = 12) -> dict[str, np.ndarray]:
    """Rows near chosen clips (a clip's row plus noise), one per query, in every channel."""
    rng = np.random.default_rng(7)
    clips = rng.choice(index.mapped.corpus.rows, n, replace=False)
    out = {}
    for c in SYNTHETIC_DIMS:
        rows = np.asarray(index.channels[c][clips], np.float32)
        out[c] = _unit(rows + 0.08 * rng.standard_normal(rows.shape).astype(np.float32))
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- answers as records ---------------------------------------------------------------------

class Table:
    """The timed lines and the clips' concepts answers show, each stored once (answers refer to
    them by position: ``ids``, ``names``)."""

    def __init__(self):
        self.table: list = []
        self._at: dict = {}

    def ids(self, items) -> list[int]:
        out = []
        for item in items:
            key = tuple(item) if isinstance(item, (list, tuple)) else item
            if key not in self._at:
                self._at[key] = len(self.table)
                self.table.append(list(item) if isinstance(item, (list, tuple)) else item)
            out.append(self._at[key])
        return out


def _matches(values) -> list:
    return [None if math.isnan(x) else float(x) for x in values]


def hit_record(h, table: Table) -> dict:
    e = h.evidence
    return {"ref": int(h.video_index), "start": h.start, "end": h.end, "score": float(h.score),
            "moment_score": float(h.moment_score), "lines": table.ids(e.lines), "concepts": table.ids(e.concepts),
            "line_match": _matches(e.line_match), "channel_scores": {c: float(s) for c, s in sorted(e.channel_scores.items())}}


def ranking_record(refs: np.ndarray, scores: np.ndarray) -> list:
    """One row per query: [[ref, score], ...] for the found videos."""
    return [[[int(r), float(s)] for r, s in zip(ri, si) if r >= 0] for ri, si in zip(refs, scores)]


def row_of(rows: dict, r: int) -> dict:
    return {c: q[r:r + 1] for c, q in rows.items()}


def shared_answers(index, texts: list[str], dense: dict[str, np.ndarray], like: np.ndarray) -> dict:
    """What ``index`` (an Index, or the Reference over one) answers for the shared material;
    ``like``: a moment's visual vector ("something like this")."""
    table = Table()
    lexical = {"lexical": np.array(texts)[:, None]}
    out = {"rank": ranking_record(*index.rank_videos({**dense, **lexical}, 10)),
           "rank_dense": ranking_record(*index.rank_videos(dense, 5)),
           "search": [], "moments": [], "evidence": []}
    n = index.num_refs()
    for r, t in enumerate(texts):
        rows = row_of(dense, r) | {"lexical": np.array([[t]])}
        out["search"].append([hit_record(h, table) for h in index.search(rows, k=3, moments_per_video=2)])
        found = index.moments(rows, list(range(n)), window=(1.0, 7.0), top=2)
        out["moments"].append([[{"start": m.moment.start, "end": m.moment.end, "score": float(m.moment.score),
                                 "lines": table.ids(m.evidence.lines), "concepts": table.ids(m.evidence.concepts)}
                                for m in video] for video in found])
        e = index.evidence(r % n, 0.0, 8.0, rows)
        out["evidence"].append({"lines": table.ids(e.lines), "concepts": table.ids(e.concepts),
                                "line_match": _matches(e.line_match)})
    out["allow_deny"] = [[hit_record(h, table) for h in index.search({"visual": like}, k=n, weights={"visual": 1.0},
                                                                     allow=a, deny=d)]
                         for a, d in ((None, None), ([0, 2, 3], None), (None, [2]))]
    out["table"] = table.table
    return out


def synthetic_answers(index, rows: dict[str, np.ndarray]) -> dict:
    table = Table()
    out = {"rank": ranking_record(*index.rank_videos(rows, 10)),
           "rank_visual": ranking_record(*index.rank_videos({"visual": rows["visual"]}, 10)),
           "search": [[hit_record(h, table) for h in index.search(row_of(rows, r), k=5)] for r in range(len(rows["visual"]))]}
    out["table"] = table.table
    return out


def resolved(answers):
    """``answers`` with each line or concept id replaced by what it names (answers compare as
    lines and concepts)."""
    table = answers["table"]

    def walk(x):
        if isinstance(x, dict):
            return {k: [table[i] for i in v] if k in ("lines", "concepts") else walk(v)
                    for k, v in x.items() if k != "table"}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x
    return walk(answers)


# ---- recording ----------------------------------------------------------------------------

def record(shared_index: Path, work: Path, shared_data: Path) -> None:
    """Dump the shared index, rebuild it and the synthetic one in ``work``, and write what the
    Python path answers on each (golden/*.json, golden/*_queries.npz)."""
    from .native_queries import line_queries, python_rows, texts
    from .reference_search import Reference

    GOLDEN.mkdir(exist_ok=True)
    dump_index(shared_index, GOLDEN / "shared_index")
    index = Index(build_index(GOLDEN / "shared_index", work / "shared"))
    batch = texts(shared_data, 20) + line_queries(index)
    dense = {c: _half(q) for c, q in python_rows(index, batch)[0].items()}
    like = _half(_unit(np.asarray(index.channels["visual"][index.mapped.clip_rows(2, 0.0, 6.0)], np.float32).mean(0, keepdims=True)))
    np.savez_compressed(GOLDEN / "shared_queries.npz", like=like, **dense)
    _write(GOLDEN / "shared.json", {"texts": batch, **shared_answers(Reference(index), batch, dense, like)})
    index.close()

    first_stages.TWO_STAGE_MIN_ROWS = SYNTHETIC_TWO_STAGE
    index = Index(build_synthetic(work / "synthetic"))
    rows = {c: _half(q) for c, q in synthetic_queries(index).items()}
    np.savez_compressed(GOLDEN / "synthetic_queries.npz", **rows)
    _write(GOLDEN / "synthetic.json", synthetic_answers(Reference(index), rows))
    index.close()


def _half(rows: np.ndarray) -> np.ndarray:
    """Query rows as stored (float16, half the bytes), so what was recorded is what is asked."""
    return np.asarray(rows, np.float16).astype(np.float32)


def engine_answers(kind: str, root: Path, prefault: bool = False) -> dict:
    """The engine's answers (``Index`` on libivcr) for a material rebuilt at ``root``; the
    synthetic index's rows report the ranking path each took (``paths``). ``prefault``: opened as
    ``ivcr serve`` opens it (the copies a query scans whole resident, int4 ones in blocks)."""
    if kind == "shared":
        golden = json.loads((GOLDEN / "shared.json").read_text())
        rows = dict(np.load(GOLDEN / "shared_queries.npz"))
        like = rows.pop("like")
        index = Index(root)
        try:
            return shared_answers(index, golden["texts"], rows, like)
        finally:
            index.close()
    first_stages.TWO_STAGE_MIN_ROWS = SYNTHETIC_TWO_STAGE
    rows = dict(np.load(GOLDEN / "synthetic_queries.npz"))
    index = Index(root, prefault=prefault)
    try:
        index.ranking_paths = paths = []
        answers = synthetic_answers(index, rows)
        # with shortlists of k videos the first stage's scores decide which videos are found
        first_stages.SHORTLIST = 10
        narrow = [ranking_record(*index.rank_videos(rows, 10)), ranking_record(*index.rank_videos(row_of(rows, 0), 10))]
        return answers | {"paths": sorted(set(paths)), "narrow": narrow}
    finally:
        index.close()


def _write(path: Path, answers: dict) -> None:
    path.write_text(json.dumps(answers, ensure_ascii=False, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "record":  # record SHARED_INDEX
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            record(Path(sys.argv[2]), Path(tmp), Path(__file__).resolve().parents[3] / "shared" / "data")
    else:  # answer shared|synthetic ROOT [prefault]: the engine's answers as JSON (test_golden.py, per kernel family)
        print(json.dumps(engine_answers(sys.argv[2], Path(sys.argv[3]), prefault=sys.argv[4:] == ["prefault"])))
