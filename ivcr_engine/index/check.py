"""``ivcr check``: verify an index folder against its committed metadata, and repair what can be
repaired without touching committed data.

Checked: every channel's row count and dtype against SQLite (file size = committed rows x row
bytes), the videos' row ranges, the clip times (file against the clips table, ends >= starts,
inside the video), tombstones and aliases, finite values, the text lines' vectors (the text model's
width, finite), the lexical table (one row per line, its segmentation current, FTS5's own
integrity check; repair rebuilds it from the lines), and the derived first-stage caches.
``repair`` trims uncommitted tails (bytes a killed ingest left), deletes stale or broken derived
caches and rebuilds the current ones, and drops broken line vectors (those lines' moments stay on
the clip grid). A file shorter than its committed rows has lost committed
data: repair marks the videos whose rows are gone as removed (so the rest of the index opens and
they can be indexed again) and pads the file to its committed length; it says so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import first_stage
from .store import LINE_VECTOR_DTYPE, IndexStore

DTYPES = {"float16", "float32", "int8"}
_CACHE = re.compile(r"^first\.(?P<tag>.+)\.(?P<rows>\d+)\.(?P<part>values|scales|norms|basis|rows_basis|centre|fitted)(?P<tmp>\.tmp)?\.npy$")
BLOCK = 1 << 16


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)   # what is wrong now
    repaired: list[str] = field(default_factory=list)   # what --repair did
    lost_videos: list[str] = field(default_factory=list)  # paths whose committed rows were gone

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"problem: {p}" for p in self.problems] + [f"repaired: {r}" for r in self.repaired]
        lines += [f"lost (marked removed, index it again): {p}" for p in self.lost_videos]
        lines.append("index is consistent" if self.ok else f"{len(self.problems)} problem(s) found"
                     + ("" if self.repaired else "; `ivcr check --repair` fixes what it can"))
        return "\n".join(lines)


def check_index(root: str | Path, repair: bool = False) -> CheckReport:
    report = CheckReport()
    with IndexStore(root) as store, store.write_lock(wait=False):
        _check(store, report, repair)
        if repair and report.repaired:
            # Verify again: whatever is still wrong after the repair is reported as the state now.
            after = CheckReport()
            _check(store, after, repair=False)
            report.problems = after.problems
    return report


def _check(store: IndexStore, report: CheckReport, repair: bool) -> None:
    counts = dict(store.db.execute("SELECT name, rows FROM channels").fetchall())
    if len(set(counts.values())) > 1:
        report.problems.append(f"channels disagree on the committed row count: {counts}")
        return  # nothing below can be trusted; this needs a re-index, not a repair
    rows = next(iter(counts.values()), 0)
    videos = store.videos(include_removed=True)
    expect = 0
    for v in videos:
        if v["first_row"] != expect or v["n_clips"] < 1:
            report.problems.append(f"video {v['id']} ({v['path']}) covers rows {v['first_row']}.."
                                   f"{v['first_row'] + v['n_clips']} but rows {expect}.. were expected")
        expect = v["first_row"] + v["n_clips"]
        if v["removed"] not in (0, 1):
            report.problems.append(f"video {v['id']} has tombstone value {v['removed']!r}")
    if expect != rows:
        report.problems.append(f"videos cover {expect} rows but the channels commit {rows}")
    files = [(store.vector_path(name), np.dtype(spec.dtype), spec.dim, name)
             for name, spec in store.channels().items() if _dtype_ok(spec, report)]
    files.append((store._clips_path(), np.dtype(np.float64), 2, None))
    complete = rows
    for path, dtype, dim, name in files:
        row_bytes = dim * dtype.itemsize
        size = path.stat().st_size if path.is_file() else 0
        need = rows * row_bytes
        if size > need:
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(need)
                report.repaired.append(f"{path}: trimmed {size - need} uncommitted bytes")
            else:
                report.problems.append(f"{path}: {size - need} bytes past the {rows} committed rows "
                                       "(left by an interrupted ingest)")
        elif size < need:
            complete = min(complete, size // row_bytes)
            report.problems.append(f"{path}: holds {size} bytes, but its {rows} committed rows need {need} "
                                   f"(committed rows {size // row_bytes}.. are lost)")
        if name is not None and dtype.kind == "f":
            _check_finite(path, dtype, dim, min(rows, size // row_bytes), report)
    if complete < rows and repair:
        _drop_lost_rows(store, videos, files, rows, complete, report)
    _check_clip_times(store, videos, min(rows, complete), report)
    _check_aliases(store, report)
    _check_line_vectors(store, report, repair)
    _check_lexical(store, report, repair)
    _check_caches(store, rows, report, repair)


def _dtype_ok(spec, report: CheckReport) -> bool:
    if spec.dtype not in DTYPES or spec.dim < 1:
        report.problems.append(f"channel {spec.name!r} is declared {spec.dim}-d {spec.dtype}, which this engine "
                               f"cannot read ({', '.join(sorted(DTYPES))})")
        return False
    return True


def _check_finite(path: Path, dtype, dim: int, rows: int, report: CheckReport) -> None:
    if rows == 0:
        return
    data = np.memmap(path, dtype=dtype, mode="r", shape=(rows, dim))
    for a in range(0, rows, BLOCK):
        bad = ~np.isfinite(np.asarray(data[a:a + BLOCK], np.float32)).all(axis=1)
        if bad.any():
            report.problems.append(f"{path}: row {a + int(np.argmax(bad))} has NaN or infinite values "
                                   f"({int(bad.sum())} rows in this block)")
            return


def _drop_lost_rows(store: IndexStore, videos, files, rows: int, complete: int, report: CheckReport) -> None:
    """Committed rows past ``complete`` are gone: tombstone their videos, pad the files."""
    lost = [v for v in videos if v["first_row"] + v["n_clips"] > complete and not v["removed"]]
    store.remove_videos([v["id"] for v in lost])
    report.lost_videos += [v["path"] for v in lost]
    for path, dtype, dim, _ in files:
        need = rows * dim * dtype.itemsize
        if not path.is_file() or path.stat().st_size < need:
            with open(path, "ab") as f:
                f.truncate(need)  # zeros; only tombstoned videos own these rows
            report.repaired.append(f"{path}: padded to its {rows} committed rows")
    report.repaired.append(f"{len(lost)} video(s) whose rows were lost marked removed")


def _check_clip_times(store: IndexStore, videos, rows: int, report: CheckReport) -> None:
    if rows == 0:
        return
    times = np.asarray(store.clip_times(rows))
    db = np.array(store.db.execute("SELECT row, t_start, t_end FROM clips ORDER BY row").fetchall(), np.float64)
    if len(db) < rows or not np.array_equal(db[:rows, 0], np.arange(rows)):
        report.problems.append(f"the clips table has {len(db)} rows for {rows} committed rows")
        return
    differ = np.flatnonzero(np.abs(db[:rows, 1:] - times).max(axis=1) > 1e-9)
    if len(differ):
        report.problems.append(f"{store._clips_path()}: {len(differ)} clip times differ from the clips table "
                               f"(first at row {int(differ[0])})")
    if np.any(times[:, 1] < times[:, 0]):
        report.problems.append(f"{store._clips_path()}: clip ends before its start at row "
                               f"{int(np.argmax(times[:, 1] < times[:, 0]))}")
    for v in videos:
        a, b = v["first_row"], min(v["first_row"] + v["n_clips"], rows)
        if a < b and (times[a:b, 0].min() < -1e-6 or times[a:b, 1].max() > v["duration"] + 1e-6):
            report.problems.append(f"video {v['id']} ({v['path']}): clip times outside 0..{v['duration']} s")


def _check_aliases(store: IndexStore, report: CheckReport) -> None:
    orphans = store.db.execute("SELECT a.path FROM aliases a LEFT JOIN videos v ON v.id = a.video_id "
                               "WHERE v.id IS NULL").fetchall()
    for (path,) in orphans:
        report.problems.append(f"alias {path} points at no video")


def _check_line_vectors(store: IndexStore, report: CheckReport, repair: bool) -> None:
    """Each text line's vector (when it has one) is as wide as the text channels' query and finite;
    repair drops a bad one (NULL: the line stays, as evidence, without snapping moments)."""
    if not store._line_vectors:
        return
    chans = store.channels()
    dim = chans["concept"].dim if "concept" in chans else chans["speech"].dim - 1 if "speech" in chans else None
    item = np.dtype(LINE_VECTOR_DTYPE).itemsize
    bad = []
    for rowid, video_id, blob in store.db.execute("SELECT rowid, video_id, vec FROM texts WHERE vec IS NOT NULL"):
        if len(blob) % item or (dim is not None and len(blob) != dim * item):
            bad.append((rowid, video_id, f"{len(blob)} bytes, not {dim} x {item}"))
        elif not np.isfinite(np.frombuffer(blob, LINE_VECTOR_DTYPE)).all():
            bad.append((rowid, video_id, "NaN or infinite values"))
    if not bad:
        return
    what = f"{len(bad)} text line vector(s) are broken (first: video {bad[0][1]}, {bad[0][2]})"
    if repair:
        store.db.executemany("UPDATE texts SET vec = NULL WHERE rowid = ?", [(r,) for r, _, _ in bad])
        report.repaired.append(f"{what}; dropped (their moments stay on the clip grid)")
    else:
        report.problems.append(what)


def _check_lexical(store: IndexStore, report: CheckReport, repair: bool) -> None:
    problems = store.lexical_problems()
    if not problems:
        return
    if repair:
        n = store.build_lexical()
        report.repaired.append(f"{'; '.join(problems)}; rebuilt from the {n} text lines")
    else:
        report.problems.extend(problems)


def _check_caches(store: IndexStore, rows: int, report: CheckReport, repair: bool) -> None:
    """Derived first-stage copies: current ones must load with the right shapes; stale ones
    (another row count) and half-written ones are leftovers."""
    folder = store.root / "vectors"
    groups: dict[tuple[str, int], dict[str, Path]] = {}
    for p in folder.glob("first.*.npy"):
        m = _CACHE.match(p.name)
        if m is None:
            continue
        groups.setdefault((m["tag"], int(m["rows"])), {})[m["part"] + (m["tmp"] or "")] = p
    rebuild = []
    for (tag, n), parts in sorted(groups.items()):
        if _being_built(folder, tag):  # a search is writing (or growing from) these: not leftovers
            continue
        why = None
        if n != rows:
            why = f"stale (built for {n} rows, the index has {rows})"
        elif "values.tmp" in parts:
            why = "half-written (a build was interrupted)"
        elif "values" in parts:
            why = _folded_problem(parts, rows) if tag.endswith(".folded") else _cache_problem(parts, rows)
        if why is None:
            continue
        if repair:
            for p in parts.values():
                p.unlink(missing_ok=True)
            report.repaired.append(f"first-stage copy {tag!r}: {why}; removed")
            if n == rows:
                rebuild.append(tag)
        else:
            report.problems.append(f"first-stage copy {tag!r}: {why}")
    for tag in rebuild:
        if _rebuild_cache(store, tag):
            report.repaired.append(f"first-stage copy {tag!r}: rebuilt")


def _being_built(folder: Path, tag: str) -> bool:
    try:
        with first_stage.building(folder, f"first.{tag}", wait=False):
            return False
    except BlockingIOError:
        return True


def _cache_problem(parts: dict[str, Path], rows: int) -> str | None:
    try:
        values = np.load(parts["values"], mmap_mode="r")
        scales = np.load(parts["scales"]) if "scales" in parts else None
        basis = np.load(parts["basis"]) if "basis" in parts else None
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    if scales is None:
        return "its scales are missing"
    if (values.dtype not in (np.int8, np.uint8) or values.ndim != 2 or values.shape[0] != rows
            or scales.shape != (rows,)):
        return f"shape {values.shape} {values.dtype} with {scales.shape} scales, expected {rows} int8 or int4 rows"
    width = values.shape[1] * (2 if values.dtype == np.uint8 else 1)  # uint8: packed int4, two dims a byte
    if basis is not None and basis.shape[1] != width:
        return f"its projection has {basis.shape[1]} dims but the values {width}"
    if not np.isfinite(scales).all():
        return "its scales have NaN or infinite values"
    return None


def _folded_problem(parts: dict[str, Path], rows: int) -> str | None:
    """The folded text rows (folded_rows.py): float16 rows and one finite norm each."""
    if "norms" not in parts:
        return "its norms are missing"
    try:
        values = np.load(parts["values"], mmap_mode="r")
        norms = np.load(parts["norms"])
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    if values.dtype != np.float16 or values.ndim != 2 or values.shape[0] != rows or norms.shape != (rows,):
        return f"shape {values.shape} {values.dtype} with {norms.shape} norms, expected {rows} float16 rows"
    if norms.dtype != np.float32 or not np.isfinite(norms).all():
        return "its norms are not finite float32 values"
    return None


def _rebuild_cache(store: IndexStore, tag: str) -> bool:
    """Build a removed current copy again through the ranking (the one place that knows how);
    False when the tag names no channel of this index (it is rebuilt on first use then)."""
    from .single import Index

    index = Index(store.root, text_encoder=object())  # no text model needed to build copies
    try:
        if tag in index.channels:
            index.ranking.first_copy(tag, None)
            return True
        m = re.fullmatch(r"text-(.+?)(\.folded)?", tag)
        folded = tuple((c, float(w)) for c, w in re.findall(r"([a-z_]+)([0-9.e+]+)", m[1])) if m else ()
        if folded and all(c in index.channels for c, _ in folded):
            if m[2]:
                return index.ranking.folded_rows(folded)
            index.ranking.first_copy("text", folded)
            return True
        return False
    finally:
        index.close()
