"""Compact first-stage copies for two-stage video ranking on large indexes.

A whole-corpus ranking at B=1 is memory-bound: its time is the bytes it reads. The first stage
therefore scans a small copy of the one channel a query needs (the folded text channels, or the
visual channel for "something like this") and keeps a shortlist that the exact float16 scan then
re-ranks. The copies:

- **projected** (``r`` int8 values + 1 scale per row): rows projected on the top ``r`` principal
  directions of the channel's own rows (uncentred, so dot products are kept, not distances). Real
  encoder outputs are far from isotropic (MiniLM sentences: 128 of 384 directions hold 88 % of the
  energy; EfficientNet-Lite0 frames: 64 of 1280 hold 96 %), so a third or less of the bytes keeps
  the shortlist's recall.
- **plain int8** (``d`` int8 values + 1 scale): used when the rows are close to isotropic (e.g.
  random vectors), where a projection would drop too much of every score.
- **whitened int4** (``r / 2`` bytes + 1 scale, folded text only, where its recall check passes):
  rows centred on their mean, rotated onto their principal directions and each direction divided
  by its spread (or the spread's square root), then four bits a value; queries get the rotation
  times the same factors, so the dot products are kept up to a per-query constant (the mean's),
  which no ranking sees. Four bits of the raw rows lose the ranking, their per-row scales set by
  a few high-variance directions (top-10 recall in the 400-video shortlist on the benchmark
  corpora: 0.86 under MiniLM, 0.01 under E5, whose rows share one large direction); whitened,
  0.999 under both.
- **coarse** (in front of a wide projected copy): its leading principal directions only, so a
  first pass reads a fraction of the bytes and the projected copy ranks only that pass's shortlist.

A copy is derived data: made on first use after the index grew, written beside the vectors under
a name that records the row count, and memory-mapped afterwards. It is fitted (its encoding chosen
from the rows, the text copy's checked) when first built, and after that **grown**: the rows a
commit added are encoded with the kept encoding and appended to a copy of the previous one, until
the index has ``GROW_LIMIT`` times the rows the encoding was fitted on, when it is fitted again.
A live server at 1M clips otherwise refitted every copy on the first search after each commit
(62 s for the text copy, 43 s for the visual one here; grown, 1.6 s and 2.3 s:
benchmarks/bench_live_growth.py). The previous generation's files are removed once the new one
is complete; encoding parts that cannot be read mean a refit, not an error. A build holds a lock
(``building``): two processes opening one grown index at once (a server and a CLI search) would
otherwise write the same temporary file and delete each other's parts; the second waits, then
opens what the first built.
"""
from __future__ import annotations

import contextlib
import fcntl
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import blas
from ..corpus import quantize_int4, quantize_int8, unpack_int4

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
# A copy grows with the encoding it was fitted with until the index holds this many times the rows
# it was fitted on (refits cost O(rows) each, so growth keeps their cost per added row bounded).
GROW_LIMIT = 2.0
BLOCK = 65_536         # rows per build pass: bounded memory on million-clip indexes

RowReader = Callable[[slice | np.ndarray], np.ndarray]  # a slice or row numbers -> float32 rows
EncodingFit = Callable[[], "Encoding | None"]            # a copy's encoding, or None for plain int8

# The folded text copy's encoding is checked, not assumed from the energy alone: on the E5
# benchmark corpus with real presence patterns (clips without speech or subtitles), the presence
# switches put most of the rows' centred energy on the mean sentence direction, 85 % of it was
# reached at 32 dims, and that copy kept 0.48 of the exact top 10 in a 0.5 % shortlist. A text
# copy is therefore fitted at each of TEXT_ENERGIES (and at its whole width), as int8 and as
# whitened int4, and the candidate with the fewest bytes a row whose copy, on a sample of whole
# videos, keeps TEXT_RECALL of the exact top 10 for sentence queries (the index's own speech/
# subtitle rows, their video left out) is kept; none: the plain int8 copy.
TEXT_ENERGIES = (0.85, 0.9, 0.95, 0.98)
TEXT_RECALL = 0.99
TEXT_CHECK_VIDEOS = 10_000
TEXT_CHECK_QUERIES = 64
# How far an int4 copy evens out its directions' spreads (whitened_int4), both tried. Folded rows
# of real MiniLM sentences (test_a_folded_text_copy_is_as_wide_as_its_recall_needs), top-10 recall
# of real queries in a 1 % shortlist at 384 dims: power 0 (rotated only) 0.87, 0.5 0.99, 1 0.97;
# on the E5 benchmark corpus power 1 gave 0.999.
WHITENING = (0.5, 1.0)


@dataclass
class FirstStageCopy:
    values: np.ndarray            # (rows, r) int8, or (rows, r / 2) uint8: packed int4 (search.quantize_int4)
    scales: np.ndarray            # (rows,) float32
    basis: np.ndarray | None      # (d, r) float32 query projection, or None for a plain int8 copy
    borrowed: bool = False        # a later generation's leading rows (see load_or_build)

    def project(self, queries: np.ndarray) -> np.ndarray:
        """Queries (B, d) in the copy's space: scores against the copy approximate the true ones."""
        q = np.asarray(queries, np.float32)
        return q if self.basis is None else np.ascontiguousarray(q @ self.basis)

    def rows(self, sel) -> np.ndarray:
        """The copy's rows ``sel`` dequantised (float32, in the copy's space)."""
        v = self.values[sel]
        return (unpack_int4(v) if v.dtype == np.uint8 else v).astype(np.float32) * self.scales[sel, None]

    def as_queries(self, sel) -> np.ndarray:
        """The copy's rows ``sel`` as projected queries (rows of the index asked as queries, e.g. by
        the inverted lists' probe check). A whitened copy's rows are divided by each direction's
        spread (to a power) and its queries multiplied by it, and its query basis's column norms
        are those factors (1 for an orthonormal basis), so the row is multiplied by their squares.
        A whitened row is centred: as a query it asks for its deviation from the rows' mean."""
        x = self.rows(sel)
        return x if self.basis is None else x * np.square(np.linalg.norm(self.basis, axis=0))


@dataclass(frozen=True)
class Encoding:
    """How a copy's rows are written: centred on ``centre`` (or not), projected on ``rows_basis``
    (or kept whole), and quantised to ``bits`` (8 or 4); queries are projected on ``basis``."""
    bits: int
    basis: np.ndarray | None               # (d, r) query projection
    rows_basis: np.ndarray | None = None   # (d, r) row projection where it differs (whitened int4)
    centre: np.ndarray | None = None       # (d,) subtracted from the rows first

    def encode(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float rows -> the copy's (values, scales)."""
        x = rows if self.centre is None else rows - self.centre
        b = self.basis if self.rows_basis is None else self.rows_basis
        x = x if b is None else x @ b
        return quantize_int4(x) if self.bits == 4 else quantize_int8(x)

    def row_bytes(self, dim: int) -> int:
        r = dim if self.basis is None else self.basis.shape[1]
        return r * self.bits // 8 + 4  # +4: the per-row scale


def whitened_int4(mean: np.ndarray, vals: np.ndarray, vecs: np.ndarray, n: int, r: int, power: float) -> Encoding:
    """The whitened int4 encoding on the leading ``r`` principal directions of rows with mean
    ``mean`` whose centred second moment (over ``n`` rows) has eigenpairs ``vals``, ``vecs``
    (descending): each direction divided by ``spread ** power`` in the rows and multiplied by it in
    the queries (``power`` 1: every direction at unit spread; 0.5: half way, see WHITENING)."""
    spread = np.sqrt(np.maximum(vals[:r], 0) / max(n, 1))
    spread = np.where(spread > 1e-12 * max(spread.max(), 1e-30), spread, 1.0) ** power
    b = vecs[:, :r]
    return Encoding(4, np.ascontiguousarray(b * spread, np.float32), np.ascontiguousarray(b / spread, np.float32),
                    np.asarray(mean, np.float32))


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
    mean, vals, vecs = _spectrum(sample, centred)
    yield from _bases(mean, vals, vecs, energies, multiple)


def _spectrum(sample: np.ndarray, centred: bool):
    """The rows' mean (None unless ``centred``) and the eigenpairs of their (centred) second
    moment, descending."""
    x = np.asarray(sample, np.float64)
    mean = x.mean(axis=0) if centred else None
    if centred:
        x = x - mean
    vals, vecs = np.linalg.eigh(x.T @ x)
    return mean, vals[::-1].clip(min=0), vecs[:, ::-1]


def _bases(mean, vals, vecs, energies: Sequence[float], multiple: int):
    """principal_bases from a spectrum (see _spectrum)."""
    centred = mean is not None
    d = len(vals)
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
    if copy.basis is None or copy.values.dtype != np.int8 or copy.basis.shape[1] < COARSE_MIN_WIDTH:
        return None  # (an int4 copy is the folded text's, checked at its width; none is that wide yet)
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
    return load_or_build(folder, f"{tag}.coarse{width}", rows, width, read, projected=Encoding(8, leading))


def checked_encoding(rows: np.ndarray, offsets: np.ndarray, queries: np.ndarray, own: np.ndarray, shortlist: int,
                     energies: tuple[float, ...] = TEXT_ENERGIES, recall: float = TEXT_RECALL) -> Encoding | None:
    """The encoding of ``rows`` with the fewest bytes a row, among centred projections fitted at
    each of ``energies`` and at the whole width, as int8 and as whitened int4, whose copy puts
    ``recall`` of the exact top 10 videos of ``queries`` into its top ``shortlist``; None (plain
    int8) when none does or none would read fewer bytes. ``own``: each query's video, left out of
    both rankings (the queries are rows of the index)."""
    from ..corpus import Corpus

    exact = Corpus({"t": rows}, offsets)
    allow = np.ones(len(offsets) - 1, bool)
    truth = []
    for q, v in zip(queries, own):
        allow[v] = False
        truth.append(exact.topk_videos({"t": q[None]}, 10, allow=allow).ids[0])
        allow[v] = True
    need = recall * sum(len(t) for t in truth)
    best, best_found, best_bytes = None, -1, None
    d = rows.shape[1]
    for enc in candidates(rows[np.linspace(0, len(rows) - 1, min(len(rows), SAMPLE_ROWS)).astype(np.int64)], energies):
        if best is not None and enc.row_bytes(d) > best_bytes:
            break  # of the fewest bytes that pass, the candidate that found the most
        first = Corpus({"t": enc.encode(rows)}, offsets)
        found = 0
        for q, v, t in zip(queries @ enc.basis, own, truth):
            allow[v] = False
            found += len(np.intersect1d(t, first.topk_videos({"t": q[None]}, shortlist, allow=allow).ids[0]))
            allow[v] = True
        if found >= need and found > best_found:
            best, best_found, best_bytes = enc, found, enc.row_bytes(d)
    return best


def candidates(sample: np.ndarray, energies: Sequence[float]) -> list[Encoding]:
    """The encodings checked_encoding tries, fewest bytes a row first: centred int8 projections at
    ``energies`` (as the energy rule fits them) and whitened int4 (at each of WHITENING) at every
    multiple of 32 dims from the narrowest of those widths to the whole width, all reading fewer
    bytes than the plain int8 copy."""
    mean, vals, vecs = _spectrum(sample, centred=True)
    d = sample.shape[1]
    out = [Encoding(8, b) for b in _bases(mean, vals, vecs, energies, 32) if b is not None]
    # int4 at every whole group from the narrowest energy width up: its bytes halve, so a wider
    # int4 copy than the int8 one the check would keep still reads fewer bytes
    narrowest = min((b.basis.shape[1] for b in out), default=32)
    widths = range(narrowest, d // 32 * 32 + 1, 32)
    out += [whitened_int4(mean, vals, vecs, len(sample), r, p) for r in widths for p in WHITENING]
    plain = Encoding(8, None).row_bytes(d)
    return sorted((e for e in out if e.row_bytes(d) < plain), key=lambda e: (e.row_bytes(d), -e.bits))


def load_or_build(folder: Path, tag: str, rows: int, dim: int, read: RowReader,
                  projected: Encoding | None = None, fit: EncodingFit | None = None) -> FirstStageCopy:
    """The first-stage copy of ``rows`` rows named ``tag`` in ``folder``, grown from the previous
    generation or built from ``read`` when missing. Files: ``first.<tag>.<rows>.<part>.npy``:
    ``values`` (int8, or uint8 for packed int4) and ``scales``; ``basis`` (the query projection),
    ``rows_basis`` and ``centre`` (how rows are written, where they differ) and ``fitted`` (the rows
    the encoding was fitted on, and whether ``read`` gives rows already projected), which a later
    generation grows with. Values are written last, so their presence marks a complete copy (a
    killed build leaves only a ``.tmp`` file). ``projected``: the encoding when ``read`` already
    returns projected rows (a coarse copy: only quantised); otherwise ``fit`` chooses it (e.g.
    ``checked_encoding`` for text), or by default the rows' principal basis is fitted (or none,
    for near-isotropic rows). A view older than the newest generation, whose own generation a
    writer has replaced, gets the least later generation's leading rows (``borrowed``): rows are
    appended and never rewritten and a grown generation keeps its predecessor's rows, so they are
    the view's; building its generation again would refit every row for a view about to refresh."""
    copy = _existing(folder, tag, rows)
    if copy is None:
        with building(folder, f"first.{tag}"):
            copy = _existing(folder, tag, rows)  # (built by another process meanwhile)
            if copy is None:
                _build_or_grow(folder, tag, rows, dim, read, projected, fit)
                copy = _open(folder, tag, rows)
    return copy


def _existing(folder: Path, tag: str, rows: int) -> FirstStageCopy | None:
    """The copy for ``rows`` rows: its own generation, else a later one's leading rows, else None
    (the folder is listed only when its own generation is missing)."""
    if _complete(folder, tag, rows):
        try:
            return _open(folder, tag, rows)
        except FileNotFoundError:  # superseded by a writer meanwhile
            pass
    for n in (n for n in generations(folder, tag) if n > rows):
        try:
            copy = _open(folder, tag, n)
        except FileNotFoundError:  # superseded by a writer meanwhile: the next one
            continue
        return FirstStageCopy(copy.values[:rows], copy.scales[:rows], copy.basis, borrowed=True)
    return None


def _complete(folder: Path, tag: str, rows: int) -> bool:
    return _part(folder, tag, rows, "values").exists() and _part(folder, tag, rows, "scales").exists()


@contextlib.contextmanager
def building(folder: Path, name: str, wait: bool = True):
    """An exclusive lock on ``folder/.<name>.lock`` while the derived files ``name`` are written
    (a lock per open file: other processes and other threads wait alike). With ``wait`` False,
    raises BlockingIOError when a build holds it. The lock file stays (removing one that another
    process has open would let a third take a second lock); its leading dot keeps it out of every
    ``first.*`` pattern."""
    with open(folder / f".{name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_or_grow(folder: Path, tag: str, rows: int, dim: int, read: RowReader, projected: Encoding | None,
                   fit: EncodingFit | None) -> None:
    """Write the copy of ``rows`` rows (see load_or_build), under its build lock."""
    for pattern in (f"first.{tag}.coarse*.{rows}.*.npy", f"first.{tag}.lists.{rows}.*"):
        for derived in folder.glob(pattern):  # made from the copy being (re)built
            derived.unlink()
    previous = _growable(folder, tag, rows)
    with blas.all_threads():
        try:
            grown = previous is not None and _grow(folder, tag, rows, read, *previous)
        except DAMAGED:  # the previous generation's parts disagree: fitted again
            grown = False
        if not grown:
            _build(folder, tag, rows, dim, read, projected, fit)
    remove_superseded(_superseded(folder, tag, rows, refitted=not grown))


def remove_superseded(paths) -> None:
    """Removes the files of generations a later complete one replaced (a search still on an older
    view keeps what it mapped), each generation's values file first: the engine looks a generation
    up by its values file, and one that is still there once the engine has read a stage vouches
    that a part found missing was never written, not half removed (FirstStage::stage)."""
    for p in sorted(paths, key=lambda p: not p.name.endswith(".values.npy")):
        p.unlink(missing_ok=True)


def _open(folder: Path, tag: str, rows: int) -> FirstStageCopy:
    basis_p = _part(folder, tag, rows, "basis")
    return FirstStageCopy(np.load(_part(folder, tag, rows, "values"), mmap_mode="r"),
                          np.load(_part(folder, tag, rows, "scales")), np.load(basis_p) if basis_p.exists() else None)


PARTS = ("values", "scales", "basis", "rows_basis", "centre", "fitted")
DAMAGED = (OSError, ValueError, TypeError, EOFError)  # what reading or using a damaged part raises


def _part(folder: Path, tag: str, rows: int, part: str) -> Path:
    return folder / f"first.{tag}.{rows}.{part}.npy"


def _own(tag: str) -> re.Pattern:
    """A copy's file names: its row count is group 1 (a tag may hold dots: "speech0.5")."""
    return re.compile(rf"first\.{re.escape(tag)}\.(\d+)\.(?:{'|'.join(PARTS)})(?:\.tmp)?\.npy")


def generations(folder: Path, tag: str) -> list[int]:
    """Row counts of the complete copies named ``tag`` in ``folder``, ascending."""
    return row_counts(folder, f"first.{tag}", ".values.npy")


def row_counts(folder: Path, stem: str, suffix: str) -> list[int]:
    """N of each file ``<stem>.<N><suffix>`` in ``folder``, ascending (a stem may hold dots:
    "speech0.5", so the name is matched whole)."""
    own = re.compile(rf"{re.escape(stem)}\.(\d+){re.escape(suffix)}")
    return sorted(int(m[1]) for p in folder.glob(f"{stem}.*{suffix}") if (m := own.fullmatch(p.name)))


def _superseded(folder: Path, tag: str, rows: int, refitted: bool):
    """Files of the copy ``tag`` built for fewer rows than ``rows``; when it was ``refitted``,
    also those of the coarse copies and lists made from it, which then cannot grow (their rows
    are in the old encoding's space)."""
    t = re.escape(tag)
    names = [_own(tag)]
    if refitted:
        names += [re.compile(rf"first\.{t}\.coarse\d+\.(\d+)\..+"), re.compile(rf"first\.{t}\.lists\.(\d+)\..+")]
    for p in folder.glob(f"first.{tag}.*"):
        if any((m := n.fullmatch(p.name)) and int(m[1]) < rows for n in names):
            yield p


def _growable(folder: Path, tag: str, rows: int):
    """(its rows, write encoding, query basis, fitted rows, rows come projected) of the newest
    complete copy with fewer rows whose encoding may still serve ``rows`` (see GROW_LIMIT), or None."""
    older = [n for n in generations(folder, tag) if n < rows]
    if not older or not _part(folder, tag, older[-1], "fitted").exists():  # a copy from before growth kept its fit
        return None
    n = older[-1]
    load = (lambda part: np.load(_part(folder, tag, n, part)) if _part(folder, tag, n, part).exists() else None)
    try:
        fitted, rows_projected = (int(x) for x in load("fitted"))
        values = np.load(_part(folder, tag, n, "values"), mmap_mode="r")
        bits, basis = 4 if values.dtype == np.uint8 else 8, load("basis")
        write = Encoding(bits, None) if rows_projected else Encoding(bits, basis, load("rows_basis"), load("centre"))
    except DAMAGED:  # fitted again (`ivcr check --repair` removes such parts)
        return None
    if rows > GROW_LIMIT * fitted or len(values) != n:
        return None
    return n, write, basis, fitted, rows_projected


def _grow(folder: Path, tag: str, rows: int, read: RowReader, n: int, write: Encoding, basis: np.ndarray | None,
          fitted: int, rows_projected: int):
    """Write the copy of ``rows`` rows from generation ``n``: its rows as they are, then rows
    n..rows written with its encoding (see load_or_build)."""
    old_v = np.load(_part(folder, tag, n, "values"), mmap_mode="r")
    out_s = np.zeros(rows, np.float32)
    out_s[:n] = np.load(_part(folder, tag, n, "scales"))
    tmp = folder / f"first.{tag}.{rows}.values.tmp.npy"
    out_v = np.lib.format.open_memmap(tmp, mode="w+", dtype=old_v.dtype, shape=(rows, old_v.shape[1]))
    for a in range(0, n, BLOCK):
        out_v[a:min(a + BLOCK, n)] = old_v[a:min(a + BLOCK, n)]
    for a in range(n, rows, BLOCK):
        b = min(a + BLOCK, rows)
        out_v[a:b], out_s[a:b] = write.encode(read(slice(a, b)))
    out_v.flush()
    del out_v
    _save_encoding(folder, tag, rows, write, basis, fitted, bool(rows_projected))
    np.save(_part(folder, tag, rows, "scales"), out_s)
    tmp.replace(_part(folder, tag, rows, "values"))
    return True


def _save_encoding(folder: Path, tag: str, rows: int, enc: Encoding, basis: np.ndarray | None, fitted: int,
                   rows_projected: bool) -> None:
    """The parts a later generation grows with (see load_or_build)."""
    for part, value in (("basis", basis), ("rows_basis", None if rows_projected else enc.rows_basis),
                        ("centre", None if rows_projected else enc.centre)):
        if value is None:
            _part(folder, tag, rows, part).unlink(missing_ok=True)
        else:
            np.save(_part(folder, tag, rows, part), value)
    np.save(_part(folder, tag, rows, "fitted"), np.array([fitted, int(rows_projected)], np.int64))


def _build(folder: Path, tag: str, rows: int, dim: int, read: RowReader, projected: Encoding | None,
           fit: EncodingFit | None):
    """Write the copy's files, its encoding fitted (see load_or_build)."""
    vals_p, scal_p = (_part(folder, tag, rows, part) for part in ("values", "scales"))
    if projected is not None:  # rows come projected: quantised only
        enc, write = projected, Encoding(projected.bits, None)
    else:
        if rows and fit is not None:
            enc = fit() or Encoding(8, None)
        elif rows:
            kind = tag.split("-")[0]
            sample = read(np.linspace(0, rows - 1, min(rows, SAMPLE_ROWS)).astype(np.int64))
            enc = Encoding(8, principal_basis(sample, ENERGY.get(kind, DEFAULT_ENERGY), centred=kind in CENTRED))
        else:
            enc = Encoding(8, None)
        write = enc
    width = dim if enc.basis is None else enc.basis.shape[1]
    tmp = folder / f"first.{tag}.{rows}.values.tmp.npy"
    dtype, cols = (np.uint8, width // 2) if enc.bits == 4 else (np.int8, width)
    out_v = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, cols))
    out_s = np.zeros(rows, np.float32)
    for a in range(0, rows, BLOCK):
        block = read(slice(a, min(a + BLOCK, rows)))
        out_v[a:a + len(block)], out_s[a:a + len(block)] = write.encode(block)
    out_v.flush()
    del out_v
    _save_encoding(folder, tag, rows, enc, enc.basis, rows, projected is not None)
    np.save(scal_p, out_s)
    tmp.replace(vals_p)
