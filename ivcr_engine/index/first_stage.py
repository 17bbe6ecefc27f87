"""Compact first-stage copies for two-stage video ranking on large indexes.

A whole-corpus ranking at B=1 is memory-bound: its time is the bytes it reads. The first stage
therefore scans a small copy of the one channel a query needs (the folded text channels, or the
visual channel for "something like this") and keeps a shortlist that the exact float16 scan then
re-ranks. Two copies exist:

- **projected** (``r`` int8 values + 1 scale per row): rows projected on the top ``r`` principal
  directions of the channel's own rows (uncentred, so dot products are kept, not distances). Real
  encoder outputs are far from isotropic (MiniLM sentences: 128 of 384 directions hold 88 % of the
  energy; EfficientNet-Lite0 frames: 64 of 1280 hold 96 %), so a third or less of the bytes keeps
  the shortlist's recall.
- **plain int8** (``d`` int8 values + 1 scale): used when the rows are close to isotropic (e.g.
  random vectors), where a projection would drop too much of every score.
- **coarse** (in front of a wide projected copy): its leading principal directions only, so a
  first pass reads a fraction of the bytes and the projected copy ranks only that pass's shortlist.

A copy is derived data: built on first use after the index grew, written beside the vectors under
a name that records the row count, and memory-mapped afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import blas
from ..search import quantize_int8

# Share of the rows' energy a projection must keep, per copy. Visual rows, full of near-duplicate
# frames, need 0.98 of their (uncentred) energy: measured on the 1M-clip corpus of real encoder
# outputs (benchmarks/synthetic_index.py). Text rows count the energy of their deviations from
# the mean (CENTRED): E5's sentences share one direction that holds most of their energy, so an
# uncentred count kept 64 dims of little else (top-10 recall 0.90 on real sentences); centred,
# 0.85 keeps 128 dims under both text models on single sentences (recall 0.99 under E5, 0.98
# under MiniLM at a 4x shortlist; tests/index/test_first_stage.py). That is only the first width
# the folded text copy tries: with the presence patterns of a real index it loses far more, and
# checked_basis (below) widens it until it holds its recall.
ENERGY = {"text": 0.85}
CENTRED = {"text"}
DEFAULT_ENERGY = 0.98
MIN_GAIN = 2.0         # project only when it reads at least this many times fewer bytes
# A projected copy this wide or wider gets a coarse copy in front: its leading COARSE_DIMS
# directions, scanned first to keep COARSE_SHORTLIST videos for the copy itself to rank. The
# visual copy (416 of 1280 dims on real EfficientNet frames) reads 416 MB a query at 1M clips,
# 30+ ms here. Measured on the encoder corpus (40 visual queries, recall@10 of the whole ranking
# against the exact scan): 48 dims 0.950 / 0.982 / 0.995 with 2,000 / 4,000 / 8,000 videos;
# 64 dims 0.985 / 0.995 with 4,000 / 8,000; 96 dims 0.993 with 4,000; 128 dims 0.995 with 4,000.
# In whole turns 48 dims with 8,000 and 96 with 4,000 took the same time within noise; 48 reads
# the fewest bytes in the pass that scans everything, and keeps the higher recall. Folded text
# copies (96-128 dims) stay one stage: their leading 48-64 dims lose recall (0.97-0.98 whatever
# the shortlist) and a coarse pass plus the copy on 8,000 videos costs what the copy alone does.
COARSE_MIN_WIDTH = 256
COARSE_DIMS = 48
COARSE_SHORTLIST = 8_000
SAMPLE_ROWS = 50_000   # rows the principal directions are fitted on (evenly spaced)
BLOCK = 65_536         # rows per build pass: bounded memory on million-clip indexes

RowReader = Callable[[slice | np.ndarray], np.ndarray]  # a slice or row numbers -> float32 rows
BasisFit = Callable[[], "np.ndarray | None"]            # a copy's projection, or None for plain int8

# The folded text copy's width is checked, not assumed from the energy alone: on the E5 benchmark
# corpus with real presence patterns (clips without speech or subtitles), the presence switches
# put most of the rows' centred energy on the mean sentence direction, 85 % of it was reached at
# 32 dims, and that copy kept 0.48 of the exact top 10 in a 0.5 % shortlist. A text copy is
# therefore fitted at each of TEXT_ENERGIES in turn and kept at the first whose int8 copy, on a
# sample of whole videos, keeps TEXT_RECALL of the exact top 10 for sentence queries (the index's
# own speech/subtitle rows, their video left out); none: the plain int8 copy.
TEXT_ENERGIES = (0.85, 0.9, 0.95, 0.98)
TEXT_RECALL = 0.99
TEXT_CHECK_VIDEOS = 10_000
TEXT_CHECK_QUERIES = 64


@dataclass
class FirstStageCopy:
    values: np.ndarray            # (rows, r) int8
    scales: np.ndarray            # (rows,) float32
    basis: np.ndarray | None      # (d, r) float32 projection, or None for a plain int8 copy

    def project(self, queries: np.ndarray) -> np.ndarray:
        """Queries (B, d) in the copy's space: scores against the copy approximate the true ones."""
        q = np.asarray(queries, np.float32)
        return q if self.basis is None else np.ascontiguousarray(q @ self.basis)


def principal_basis(sample: np.ndarray, energy: float = DEFAULT_ENERGY, multiple: int = 32,
                    centred: bool = False) -> np.ndarray | None:
    """The top principal directions (of the uncentred second moment) that keep ``energy`` of the
    rows' squared norm, rounded up to ``multiple`` dims; None when they would not cut the bytes
    by ``MIN_GAIN`` (near-isotropic rows). ``centred``: the rows' mean direction, then the top
    principal directions of the rows' deviations from their mean, counted on those deviations."""
    return next(principal_bases(sample, (energy,), multiple, centred))


def principal_bases(sample: np.ndarray, energies: Sequence[float], multiple: int = 32, centred: bool = False):
    """``principal_basis`` at each of ``energies`` (ascending) from one eigendecomposition,
    yielding each distinct width once; a None (no gain in bytes) ends the sequence."""
    x = np.asarray(sample, np.float64)
    d = x.shape[1]
    mean = x.mean(axis=0) if centred else None
    if centred:
        x = x - mean
    vals, vecs = np.linalg.eigh(x.T @ x)
    vals, vecs = vals[::-1].clip(min=0), vecs[:, ::-1]
    total = vals.sum()
    if total <= 0:
        yield None
        return
    last = None
    for energy in energies:
        r = int(np.searchsorted(np.cumsum(vals) / total, energy) + 1)
        r = min(d, -(-r // multiple) * multiple)
        if (d + 4) / (r + 4) < MIN_GAIN:  # +4: the per-row scale
            yield None
            return
        if r == last:
            continue
        last = r
        if centred and np.linalg.norm(mean) > 0:  # the mean direction first, then the deviations' (orthonormal)
            basis, _ = np.linalg.qr(np.concatenate([mean[:, None], vecs[:, :r - 1]], axis=1))
            yield np.ascontiguousarray(basis, np.float32)
        else:
            yield np.ascontiguousarray(vecs[:, :r], np.float32)


def coarse_width(copy: FirstStageCopy) -> int | None:
    """The width of a coarse copy in front of ``copy`` (its leading ``COARSE_DIMS`` principal
    directions), or None when ``copy`` is narrow enough to scan whole (or not projected)."""
    if copy.basis is None or copy.basis.shape[1] < COARSE_MIN_WIDTH:
        return None
    return COARSE_DIMS


def load_or_build_coarse(folder: Path, tag: str, fine: FirstStageCopy) -> FirstStageCopy:
    """The coarse copy in front of the projected copy ``fine`` (see ``coarse_width``): its leading
    columns, requantised. Its queries are ``fine``'s projected queries (its basis selects their
    leading columns), and it is derived from ``fine`` alone, so building it reads no float rows."""
    width = coarse_width(fine)
    rows, fine_width = fine.values.shape

    def read(sel) -> np.ndarray:
        return np.asarray(fine.values[sel, :width], np.float32) * fine.scales[sel, None]

    leading = np.eye(fine_width, width, dtype=np.float32)
    return load_or_build(folder, f"{tag}.coarse{width}", rows, width, read, basis=leading)


def checked_basis(rows: np.ndarray, offsets: np.ndarray, queries: np.ndarray, own: np.ndarray, shortlist: int,
                  energies: tuple[float, ...] = TEXT_ENERGIES, recall: float = TEXT_RECALL) -> np.ndarray | None:
    """The narrowest centred projection of ``rows`` (fitted at each of ``energies`` in turn) whose
    int8 copy puts ``recall`` of the exact top 10 videos of ``queries`` into its top ``shortlist``;
    None (plain int8) when none does or none would cut the bytes. ``own``: each query's video,
    left out of both rankings (the queries are rows of the index)."""
    from ..search import Corpus

    exact = Corpus({"t": rows}, offsets)
    allow = np.ones(len(offsets) - 1, bool)
    truth = []
    for q, v in zip(queries, own):
        allow[v] = False
        truth.append(exact.topk_videos({"t": q[None]}, 10, allow=allow).ids[0])
        allow[v] = True
    sample = rows[np.linspace(0, len(rows) - 1, min(len(rows), SAMPLE_ROWS)).astype(np.int64)]
    for basis in principal_bases(sample, energies, centred=True):
        if basis is None:
            return None
        first = Corpus({"t": quantize_int8(rows @ basis)}, offsets)
        found = 0
        for q, v, t in zip(queries @ basis, own, truth):
            allow[v] = False
            found += len(np.intersect1d(t, first.topk_videos({"t": q[None]}, shortlist, allow=allow).ids[0]))
            allow[v] = True
        if found >= recall * sum(len(t) for t in truth):
            return basis
    return None


def load_or_build(folder: Path, tag: str, rows: int, dim: int, read: RowReader,
                  basis: np.ndarray | None = None, fit: BasisFit | None = None) -> FirstStageCopy:
    """The first-stage copy of ``rows`` rows named ``tag`` in ``folder``, built from ``read`` when
    missing. Files: ``first.<tag>.<rows>.{basis,scales,values}.npy``; values are written last,
    so their presence marks a complete copy (a killed build leaves only a ``.tmp`` file).
    ``basis``: the query projection when ``read`` already returns projected rows (a coarse copy);
    otherwise ``fit`` chooses it (e.g. ``checked_basis`` for text), or by default the rows'
    principal basis is fitted (or none, for near-isotropic rows)."""
    vals_p, scal_p, basis_p = (folder / f"first.{tag}.{rows}.{part}.npy" for part in ("values", "scales", "basis"))
    if vals_p.exists() and scal_p.exists():
        basis = np.load(basis_p) if basis_p.exists() else None
        return FirstStageCopy(np.load(vals_p, mmap_mode="r"), np.load(scal_p), basis)
    for pattern in (f"first.{tag}.coarse*.{rows}.*.npy", f"first.{tag}.lists.{rows}.*"):
        for derived in folder.glob(pattern):  # made from the copy being (re)built
            derived.unlink()
    with blas.all_threads():
        basis, out_s = _build(folder, tag, rows, dim, read, basis, fit)
    return FirstStageCopy(np.load(vals_p, mmap_mode="r"), out_s, basis)


def _build(folder: Path, tag: str, rows: int, dim: int, read: RowReader, basis: np.ndarray | None,
           fit: BasisFit | None):
    """Write the copy's files (see load_or_build); returns its basis and scales."""
    vals_p, scal_p, basis_p = (folder / f"first.{tag}.{rows}.{part}.npy" for part in ("values", "scales", "basis"))
    project = basis is None
    if project and rows and fit is not None:
        basis = fit()
    elif project and rows:
        kind = tag.split("-")[0]
        sample = read(np.linspace(0, rows - 1, min(rows, SAMPLE_ROWS)).astype(np.int64))
        basis = principal_basis(sample, ENERGY.get(kind, DEFAULT_ENERGY), centred=kind in CENTRED)
    width = dim if basis is None else basis.shape[1]
    tmp = folder / f"first.{tag}.{rows}.values.tmp.npy"
    out_v = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int8, shape=(rows, width))
    out_s = np.zeros(rows, np.float32)
    for a in range(0, rows, BLOCK):
        block = read(slice(a, min(a + BLOCK, rows)))
        if project and basis is not None:
            block = block @ basis
        out_v[a:a + len(block)], out_s[a:a + len(block)] = quantize_int8(block)
    out_v.flush()
    del out_v
    basis_p.unlink(missing_ok=True)
    if basis is not None:
        np.save(basis_p, basis)
    np.save(scal_p, out_s)
    tmp.replace(vals_p)
    return basis, out_s
