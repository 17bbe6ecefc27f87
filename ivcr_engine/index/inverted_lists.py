"""Inverted lists over a first-stage copy: a million-clip first stage that reads a few percent of
the copy instead of all of it.

A whole scan of even a compact copy costs its size in memory traffic per query: the folded text
copy is 128 MB at 1M clips (MiniLM), the visual copy 256-416 MB (what that costs per query is in
docs/BENCHMARKS.md). Encoder outputs cluster, so the copy's rows are grouped by spherical k-means into about
``rows / ROWS_PER_LIST`` lists and stored again list by list (a permuted copy, same bytes per
row). A query scores the list centroids and scans only its ``probe`` best lists, with the same
native int8 kernel: the lists are the "videos" of an allow-filtered scan, so each probed list is
one contiguous run of rows. Its best clips map back to their videos, which the exact stage then
re-ranks as before.

How many lists a query must probe depends on the rows, so the build measures it instead of
assuming it: ``SELF_CHECK_QUERIES`` rows of the copy serve as queries (their own video left out,
as a "something like this" turn leaves it out), and the smallest probe count whose shortlists hold
at least ``SELF_CHECK_RECALL`` of the full copy scan's top 10 is kept. Rows that do not cluster
(random vectors) reach it at no useful probe count: then no lists are kept, and the first stage
scans the whole copy as before.

The lists grow with their copy (first_stage.py): rows a commit added join their nearest list and
the permuted copy is written again, the centroids and the measured probe count kept, until the
index has ``first_stage.GROW_LIMIT`` times the rows they were fitted on. A refitted copy takes
its lists with it (first_stage removes them), so lists only ever grow over the space they were
fitted in.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import blas
from ..corpus import Corpus
from . import first_stage
from .first_stage import FirstStageCopy

ROWS_PER_LIST = 1_000      # 1M clips -> 1,000 lists of ~1,000 rows (a probed list is one ~100-400 KB run)
SAMPLE_PER_LIST = 64       # k-means is fitted on this many rows per list (evenly spaced)
KMEANS_ITERS = 8
# Probe counts tried by the self-check, smallest first; a probe count past MAX_PROBE_SHARE of the
# lists would save too little over a whole scan to be worth the second copy.
PROBES = (8, 16, 24, 32, 48, 64, 96, 128)
MAX_PROBE_SHARE = 0.15
SELF_CHECK_QUERIES = 128
SELF_CHECK_RECALL = 0.997  # of the copy scan's top 10 in the lists' shortlist (<= 3 misses of 1,280)
CLIPS_PER_SHORTLISTED_VIDEO = 8  # best clips kept per wanted video: a video's clips often share a list
BLOCK = 65_536             # rows per assignment pass


@dataclass
class InvertedLists:
    centroids: np.ndarray   # (lists, r) float32, unit rows, in the copy's (projected) space
    order: np.ndarray       # (rows,) int64: the copy row stored at each position
    values: np.ndarray      # the copy's values (int8, or packed int4), list after list
    corpus: Corpus          # those rows (channel "c"); its "videos" are the lists
    probe: int              # lists a query scans

    @property
    def lists(self) -> int:
        return len(self.centroids)

    def best_rows(self, query: np.ndarray, weight: float, clips: int) -> np.ndarray:
        """Up to ``clips`` copy rows (original numbering) best for ``query`` (1, r), projected into
        the copy's space, best first, from its ``probe`` nearest lists."""
        near = np.argpartition(-(self.centroids @ query[0]), self.probe - 1)[:self.probe]
        ids = self.corpus.topk_clips({"c": query}, clips, weights={"c": weight}, allow=near).ids[0]
        return self.order[ids[ids >= 0]]

    def shortlist(self, query: np.ndarray, weight: float, n: int, offsets: np.ndarray,
                  eligible: np.ndarray) -> np.ndarray:
        """Up to ``n`` eligible videos best for ``query``, best first (each by its best clip)."""
        rows = self.best_rows(query, weight, n * CLIPS_PER_SHORTLISTED_VIDEO)
        videos = np.searchsorted(offsets, rows, side="right") - 1
        videos = videos[eligible[videos]]
        _, first = np.unique(videos, return_index=True)
        return videos[np.sort(first)][:n]


def wanted(rows: int, min_rows: int) -> bool:
    """Whether an index of ``rows`` clips, two-stage from ``min_rows`` on, gets lists."""
    return rows >= max(min_rows, 4 * ROWS_PER_LIST)


def paths(folder: Path, tag: str, rows: int) -> dict[str, Path]:
    base = f"first.{tag}.lists.{rows}"
    out = {p: folder / f"{base}.{p}.npy" for p in ("centroids", "bounds", "order", "scales", "values")}
    out["meta"] = folder / f"{base}.json"
    return out


def load_or_build(folder: Path, tag: str, copy: FirstStageCopy, offsets: np.ndarray,
                  shortlist: int) -> InvertedLists | None:
    """The inverted lists over ``copy`` (named ``tag``: ``first.<tag>.lists.<rows>.*``), built when
    missing, or None when the build found that no probe count keeps the copy's ranking (that
    verdict is kept too). ``shortlist``: the videos a query keeps, as the self-check counts them.
    The verdict file is written last, so a killed build is redone. Lists of an earlier
    generation of the copy grow into these (see above) while they may."""
    rows = len(copy.values)
    part = paths(folder, tag, rows)
    built = _built(part)
    if built is _UNBUILT:
        with first_stage.building(folder, f"first.{tag}.lists"):  # (another process may be writing them)
            built = _built(part)
            if built is _UNBUILT:
                built = _build_or_grow(folder, tag, copy, offsets, shortlist, part)
    return built


_UNBUILT = object()


def _built(part: dict[str, Path]):
    """The complete lists ``part``, None for a kept "no probe count keeps the ranking" verdict,
    _UNBUILT when they are still to be written."""
    if part["meta"].exists():
        probe = json.loads(part["meta"].read_text())["probe"]
        if not probe:
            return None
        if part["values"].exists():
            return _open(part, probe)
    return _UNBUILT


def _build_or_grow(folder: Path, tag: str, copy: FirstStageCopy, offsets: np.ndarray, shortlist: int,
                   part: dict[str, Path]) -> InvertedLists | None:
    """Write the lists (see load_or_build), under their build lock."""
    rows = len(copy.values)
    older = _growable(folder, tag, rows)
    with blas.all_threads():
        try:
            grown = _grow(copy, paths(folder, tag, older[0]), older[1], part) if older else None
        except first_stage.DAMAGED:  # the older lists' files disagree: fitted again
            part["meta"].unlink(missing_ok=True)
            older = None
        first_stage.remove_superseded(  # an older build's lists, or a killed one's
            p for p in folder.glob(f"first.{tag}.lists.*")
            if older is None or not p.name.startswith(part["meta"].stem + "."))
        return grown if older else _build(folder, tag, copy, offsets, shortlist, part)


def _growable(folder: Path, tag: str, rows: int) -> tuple[int, dict] | None:
    """(rows, verdict) of the newest complete lists (or kept verdict) over fewer rows that may
    grow to ``rows``: fitted on at least ``rows / GROW_LIMIT`` rows."""
    older = [n for n in first_stage.row_counts(folder, f"first.{tag}.lists", ".json") if n < rows]
    if not older:
        return None
    part = paths(folder, tag, older[-1])
    try:
        meta = {"fitted": older[-1]} | json.loads(part["meta"].read_text())
        meta["lists"], meta["probe"], meta["fitted"] = int(meta["lists"]), int(meta["probe"]), int(meta["fitted"])
    except (*first_stage.DAMAGED, KeyError):  # a damaged verdict: fitted again
        return None
    if rows > first_stage.GROW_LIMIT * meta["fitted"] or (meta["probe"] and not part["values"].exists()):
        return None
    return older[-1], meta


def _grow(copy: FirstStageCopy, old: dict[str, Path], meta: dict, part: dict[str, Path]) -> InvertedLists | None:
    """Lists over ``copy`` from those over its first rows (files ``old``, verdict ``meta``): each
    added row joins its nearest list, after the list's own rows."""
    rows = len(copy.values)
    verdict = {"lists": meta["lists"], "probe": meta["probe"], "fitted": meta["fitted"]}
    if not meta["probe"]:
        part["meta"].write_text(json.dumps(verdict))
        return None
    centroids, before = np.load(old["centroids"]), np.load(old["order"])
    n = len(before)
    added = [nearest(copy.rows(slice(a, min(a + BLOCK, rows))), centroids) for a in range(n, rows, BLOCK)]
    assign = np.concatenate([np.repeat(np.arange(len(centroids), dtype=np.int32), np.diff(np.load(old["bounds"]))),
                             *added])
    by_list = np.argsort(assign, kind="stable")  # a list's earlier rows first, then the added ones in row order
    _write(part, copy, centroids, np.concatenate([before, np.arange(n, rows)])[by_list], assign[by_list])
    part["meta"].write_text(json.dumps(verdict))
    return _open(part, meta["probe"])


def _build(folder: Path, tag: str, copy: FirstStageCopy, offsets: np.ndarray, shortlist: int,
           part: dict[str, Path]) -> InvertedLists | None:
    """Fit the lists, write the permuted copy, then measure the probe count (see load_or_build)."""
    rows = len(copy.values)
    n_lists = max(2, rows // ROWS_PER_LIST)
    rng = np.random.default_rng(0)
    sample = copy.rows(np.linspace(0, rows - 1, min(rows, SAMPLE_PER_LIST * n_lists)).astype(np.int64))
    centroids = spherical_kmeans(sample, n_lists, KMEANS_ITERS, rng)
    assign = np.concatenate([nearest(copy.rows(slice(a, min(a + BLOCK, rows))), centroids)
                             for a in range(0, rows, BLOCK)])
    order = np.argsort(assign, kind="stable")  # within a list rows keep their order: a video's clips stay together
    _write(part, copy, centroids, order, assign[order])
    lists = _open(part, 0)
    lists.probe = _choose_probe(lists, copy, offsets, shortlist, rng)
    part["meta"].write_text(json.dumps({"lists": n_lists, "probe": lists.probe, "fitted": rows}))
    if not lists.probe:
        for p in folder.glob(f"first.{tag}.lists.{rows}.*.npy"):
            p.unlink()
        return None
    return lists


def _write(part: dict[str, Path], copy: FirstStageCopy, centroids: np.ndarray, order: np.ndarray,
           sorted_lists: np.ndarray) -> None:
    """The permuted copy: the copy's row ``order[i]`` at position i, in list ``sorted_lists[i]``
    (ascending); the values last, then the caller's verdict."""
    tmp = part["values"].with_suffix(".tmp.npy")
    values = np.lib.format.open_memmap(tmp, mode="w+", dtype=copy.values.dtype, shape=copy.values.shape)
    for a in range(0, len(order), BLOCK):
        values[a:a + BLOCK] = copy.values[order[a:a + BLOCK]]
    values.flush()
    del values
    np.save(part["centroids"], centroids)
    np.save(part["bounds"], np.searchsorted(sorted_lists, np.arange(len(centroids) + 1)))
    np.save(part["order"], order)
    np.save(part["scales"], copy.scales[order])
    tmp.replace(part["values"])


def _open(part: dict[str, Path], probe: int) -> InvertedLists:
    values = np.load(part["values"], mmap_mode="r")
    corpus = Corpus({"c": (values, np.load(part["scales"]))}, np.load(part["bounds"]))
    return InvertedLists(np.load(part["centroids"]), np.load(part["order"]), values, corpus, probe)


def _choose_probe(lists: InvertedLists, copy: FirstStageCopy, offsets: np.ndarray, shortlist: int, rng) -> int:
    """The smallest probe count of ``PROBES`` whose shortlists keep ``SELF_CHECK_RECALL`` of the
    whole copy's top 10 videos, for rows of the copy used as queries (0: none does)."""
    rows, n_videos = len(copy.values), len(offsets) - 1
    picks = np.sort(rng.choice(rows, min(rows, SELF_CHECK_QUERIES), replace=False))
    queries = copy.as_queries(picks)
    own = np.searchsorted(offsets, picks, side="right") - 1
    full = Corpus({"c": (copy.values, copy.scales)}, offsets)
    truth = full.topk_videos({"c": queries}, 11, weights={"c": 1.0}).ids
    truth = [t[(t != v) & (t >= 0)][:10] for t, v in zip(truth, own)]
    eligible = np.ones(n_videos, bool)
    for probe in PROBES:
        if probe > MAX_PROBE_SHARE * lists.lists:
            break
        lists.probe = probe
        found = total = 0
        for q, t, v in zip(queries, truth, own):
            eligible[v] = False
            found += len(np.intersect1d(t, lists.shortlist(q[None], 1.0, shortlist, offsets, eligible)))
            eligible[v] = True
            total += len(t)
        if found >= SELF_CHECK_RECALL * total:
            return probe
    return 0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The list of each row: its centroid of highest cosine (argmax of the dot with unit centroids)."""
    return np.argmax(x @ centroids.T, axis=1).astype(np.int32)


def spherical_kmeans(x: np.ndarray, k: int, iters: int, rng) -> np.ndarray:
    """``k`` unit centroids of the unit directions of ``x`` (Lloyd's iterations on cosine); an
    emptied list is reseeded with the row its centroid fits worst."""
    x = _unit(np.asarray(x, np.float32))
    c = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        sim = x @ c.T
        a = np.argmax(sim, axis=1)
        sums = np.zeros_like(c)
        np.add.at(sums, a, x)
        counts = np.bincount(a, minlength=k)
        worst = np.argsort(sim[np.arange(len(x)), a])
        for j, w in zip(np.flatnonzero(counts == 0), worst):
            sums[j] = x[w]
        c = _unit(sums)
    return c.astype(np.float32)
