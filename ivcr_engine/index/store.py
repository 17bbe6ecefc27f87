"""The index store: a folder with SQLite metadata and one append-only vector file per channel.

    INDEX/meta.sqlite          videos, clips, texts (transcript/subtitle lines, each with its text
                               vector: moments snap to the lines that match a query), channels, models
    INDEX/vectors/<name>.bin   rows of one channel (float16 by default), memory-mapped on open
    INDEX/vectors/clip_times.f8  [start, end] seconds of every row, memory-mapped on open

Crash safety comes from the order of writes: a video's rows are appended to every row file
and flushed to disk first, then one SQLite transaction records the video, its clips, its texts and
the new row counts. SQLite's committed row counts are the truth: bytes past them (left by a
killed ingest) are ignored on open and cut off before the next append. So a kill -9 at any point
leaves every fully committed video intact and the index usable.

Readers see one committed state at a time: ``snapshot()`` reads the videos and every channel's
row count in one SQLite read transaction, and the row files are mapped only up to that count
(never by file size), so an ingest appending rows meanwhile is invisible until its commit.
A row file shorter than its committed rows is damage, reported as :class:`IndexDamaged`.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import IndexDamaged, MissingFile
from .shared_connection import serialised
from .store_lexical import LexicalTable
from .store_writer import LINE_VECTOR_DTYPE, StoreWriter

SCHEMA_VERSION = 2  # 2: clip times in a memory-mapped row file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  path TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  duration REAL NOT NULL,
  fps REAL,
  width INTEGER,
  height INTEGER,
  first_row INTEGER NOT NULL,
  n_clips INTEGER NOT NULL,
  removed INTEGER NOT NULL DEFAULT 0,
  added_at REAL NOT NULL,
  info TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS videos_live_hash ON videos(content_hash) WHERE removed = 0;
CREATE TABLE IF NOT EXISTS clips (row INTEGER PRIMARY KEY, video_id INTEGER NOT NULL, t_start REAL NOT NULL,
                                  t_end REAL NOT NULL, top_concepts TEXT);
CREATE INDEX IF NOT EXISTS clips_video ON clips(video_id);
CREATE INDEX IF NOT EXISTS videos_path ON videos(path);
CREATE TABLE IF NOT EXISTS texts (video_id INTEGER NOT NULL, source TEXT NOT NULL, t_start REAL NOT NULL,
                                  t_end REAL NOT NULL, text TEXT NOT NULL, vec BLOB);
CREATE INDEX IF NOT EXISTS texts_video ON texts(video_id);
CREATE TABLE IF NOT EXISTS aliases (path TEXT PRIMARY KEY, video_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS channels (name TEXT PRIMARY KEY, dim INTEGER NOT NULL, dtype TEXT NOT NULL,
                                     rows INTEGER NOT NULL, model TEXT, model_sha256 TEXT);
"""


def _bound(t: float) -> float:
    """A time bound SQLite can compare (it has no infinities in parameters; 1e300 does)."""
    return float(np.clip(t, -1e300, 1e300))


def damaged(root: Path, what: str) -> IndexDamaged:
    return IndexDamaged(f"index {root} is damaged: {what}; run `ivcr check --index {root} --repair`")


@dataclass(frozen=True)
class Snapshot:
    """One committed state of the index, read in a single transaction."""

    rows: int                              # committed rows (the same in every channel)
    videos: tuple                          # every video record (removed included), by first_row
    channels: dict                         # name -> ChannelSpec
    data_version: int                      # SQLite's data_version when read (changes on others' commits)
    aliases: dict                          # video id -> other paths with the same content

    @property
    def key(self) -> tuple:
        """What a reader's mapping depends on: rows, every video's id, path and removed flag,
        aliases, and each channel's model (a text rebuild replaces the rows of the same count)."""
        return ((self.rows,) + tuple((v["id"], v["path"], v["removed"]) for v in self.videos)
                + tuple(sorted((k, tuple(p)) for k, p in self.aliases.items()))
                + tuple((n, c.dim, c.model, c.model_sha256) for n, c in sorted(self.channels.items())))


@dataclass
class VideoRecord:
    """What ingest hands the store for one video."""

    path: str
    content_hash: str
    duration: float
    clip_times: np.ndarray                      # (n_clips, 2) seconds
    vectors: Mapping[str, np.ndarray]           # channel -> (n_clips, dim) float32, unit rows
    texts: Sequence[tuple[str, float, float, str]] = ()  # (source, start, end, text)
    text_vectors: np.ndarray | None = None      # (len(texts), d) unit rows in the text model's space
    top_concepts: Sequence[str] | None = None   # per clip, e.g. "cockatoo 0.61, macaw 0.12"
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    dim: int
    dtype: str = "float16"
    model: str | None = None
    model_sha256: str | None = None


class IndexStore(StoreWriter, LexicalTable):
    """Open (or create) an index folder. One writer at a time; readers may open it concurrently."""

    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root)
        if not (self.root / "meta.sqlite").is_file():
            if not create:
                raise MissingFile(f"no index at {self.root} (meta.sqlite missing); build one with `ivcr index`")
            (self.root / "vectors").mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: a server reads one index from many threads, one at a time (_lock)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(self.root / "meta.sqlite"), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        version = self._meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise RuntimeError(f"index {self.root} has schema version {version}; this engine reads {SCHEMA_VERSION}")
        self._line_vectors = self._ensure_line_vector_column()
        self._open_lexical()  # the lines' words for BM25 (store_lexical.py), built here for an older index

    def _ensure_line_vector_column(self) -> bool:
        """Indexes written before lines had vectors lack the texts.vec column: add it (an O(1)
        schema change; their old lines stay without vectors, so their moments keep the clip
        grid). False when it is missing and cannot be added (a read-only index)."""
        def has() -> bool:
            return any(r[1] == "vec" for r in self.db.execute("PRAGMA table_info(texts)"))

        if has():
            return True
        try:
            self.db.execute("ALTER TABLE texts ADD COLUMN vec BLOB")
        except sqlite3.OperationalError:  # another opener added it first, or the file is read-only
            pass
        return has()

    # -- metadata ---------------------------------------------------------------------------
    @serialised
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def settings(self) -> dict:
        raw = self._meta("settings")
        return json.loads(raw) if raw else {}

    def set_settings(self, settings: dict) -> None:
        self.set_meta("settings", json.dumps(settings, sort_keys=True))

    @serialised
    def channels(self) -> dict[str, ChannelSpec]:
        rows = self.db.execute("SELECT name, dim, dtype, model, model_sha256 FROM channels ORDER BY name").fetchall()
        return {r[0]: ChannelSpec(*r) for r in rows}

    def ensure_channel(self, spec: ChannelSpec) -> None:
        have = self.channels().get(spec.name)
        if have is None:
            if self.row_count() > 0:
                raise ValueError(f"channel {spec.name!r} cannot join an index that already has rows; re-index")
            self.db.execute("INSERT INTO channels(name, dim, dtype, rows, model, model_sha256) VALUES (?, ?, ?, 0, ?, ?)",
                            (spec.name, spec.dim, spec.dtype, spec.model, spec.model_sha256))
        elif (have.dim, have.dtype) != (spec.dim, spec.dtype):
            raise ValueError(f"channel {spec.name!r} is {have.dim}-d {have.dtype} in this index, not "
                             f"{spec.dim}-d {spec.dtype}")

    @serialised
    def row_count(self) -> int:
        row = self.db.execute("SELECT MAX(rows) FROM channels").fetchone()
        return int(row[0] or 0)

    def has_hash(self, content_hash: str) -> bool:
        return self.video_by_hash(content_hash) is not None

    def video_by_hash(self, content_hash: str) -> dict | None:
        rows = self._video_rows("WHERE content_hash = ? AND removed = 0", (content_hash,))
        return rows[0] if rows else None

    def vector_path(self, name: str) -> Path:
        return self.root / "vectors" / f"{name}.bin"

    def _clips_path(self) -> Path:
        return self.root / "vectors" / "clip_times.f8"

    # -- aliases: other paths with the same content as a stored video -------------------------
    @serialised
    def aliases(self, video_id: int | None = None) -> dict[int, list[str]]:
        """video id -> its alias paths (every live video's, or one video's)."""
        q = "SELECT a.video_id, a.path FROM aliases a JOIN videos v ON v.id = a.video_id WHERE v.removed = 0"
        rows = self.db.execute(q + (" AND a.video_id = ?" if video_id is not None else "") + " ORDER BY a.path",
                               () if video_id is None else (int(video_id),)).fetchall()
        out: dict[int, list[str]] = {}
        for vid, path in rows:
            out.setdefault(int(vid), []).append(path)
        return out

    def line_texts(self) -> list[tuple[int, str]]:
        """Every stored text line as (rowid, text), for re-embedding them."""
        return self.db.execute("SELECT rowid, text FROM texts ORDER BY rowid").fetchall()

    # -- reading ----------------------------------------------------------------------------
    @serialised
    def data_version(self) -> int:
        """Changes whenever another connection commits (cheap: no table is read)."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    @serialised
    def snapshot(self, allow_rebuild: bool = False) -> Snapshot:
        """The committed videos, channels and row count, all from one read transaction."""
        self.db.execute("BEGIN")
        try:
            if not allow_rebuild and self._meta("rebuilding_text"):
                raise IndexDamaged(f"index {self.root}: a text rebuild was interrupted (some text channels may hold "
                                   f"the new model's rows); run `ivcr index --index {self.root} --rebuild-text` again")
            version = self.data_version()
            videos = tuple(self._video_rows())
            aliases = self.aliases()
            chans = self.db.execute("SELECT name, dim, dtype, model, model_sha256, rows FROM channels ORDER BY name"
                                    ).fetchall()
        finally:
            self.db.execute("COMMIT")
        counts = {r[0]: int(r[5]) for r in chans}
        if len(set(counts.values())) > 1:
            raise damaged(self.root, f"channels disagree on the committed row count ({counts})")
        rows = next(iter(counts.values()), 0)
        if videos and videos[-1]["first_row"] + videos[-1]["n_clips"] != rows:
            raise damaged(self.root, f"the videos cover {videos[-1]['first_row'] + videos[-1]['n_clips']} rows "
                                     f"but {rows} are committed")
        return Snapshot(rows, videos, {r[0]: ChannelSpec(*r[:5]) for r in chans}, version, aliases)

    def _map(self, path: Path, dtype, rows: int, dim: int) -> np.ndarray:
        """Map the first ``rows`` rows of a row file read-only; a file shorter than that is damage."""
        if rows == 0:
            return np.zeros((0, dim), dtype)
        need = rows * dim * np.dtype(dtype).itemsize
        have = path.stat().st_size if path.is_file() else -1
        if have < need:
            state = "is missing" if have < 0 else f"holds {have} bytes"
            raise damaged(self.root, f"{path} {state}, but its {rows} committed rows need {need} bytes")
        return np.memmap(path, dtype=dtype, mode="r", shape=(rows, dim))

    _VIDEO_KEYS = ("id", "path", "content_hash", "duration", "fps", "width", "height", "first_row", "n_clips",
                   "removed", "info")

    @serialised
    def _video_rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        q = f"SELECT {', '.join(self._VIDEO_KEYS)} FROM videos {where} ORDER BY first_row"
        return [dict(zip(self._VIDEO_KEYS, r)) for r in self.db.execute(q, params).fetchall()]

    def videos(self, include_removed: bool = False) -> list[dict]:
        return self._video_rows("" if include_removed else "WHERE removed = 0")

    def find_video_by_path(self, path: str) -> dict | None:
        """The live video stored under ``path``, as its own path or as an alias."""
        rows = self._video_rows("WHERE path = ? AND removed = 0", (path,))
        if not rows:
            rows = self._video_rows("WHERE removed = 0 AND id IN (SELECT video_id FROM aliases WHERE path = ?)", (path,))
        return rows[0] if rows else None

    def vectors(self, name: str, rows: int | None = None) -> np.ndarray:
        """The committed rows of a channel (or its first ``rows``, from a snapshot), memory-mapped
        read-only (no copy, no load time)."""
        spec = self.channels()[name]
        return self._map(self.vector_path(name), spec.dtype, self.row_count() if rows is None else rows, spec.dim)

    def clip_times(self, rows: int | None = None) -> np.ndarray:
        """(rows, 2) float64 clip [start, end] seconds of every committed row, memory-mapped (so
        opening a million-clip index reads nothing up front)."""
        return self._map(self._clips_path(), np.float64, self.row_count() if rows is None else rows, 2)

    @serialised
    def _lines(self, columns: str, video_id: int, start: float, end: float) -> list[tuple]:
        return self.db.execute(f"SELECT {columns} FROM texts WHERE video_id = ? AND t_start < ? AND t_end > ?"
                               " ORDER BY t_start, rowid", (video_id, _bound(end), _bound(start))).fetchall()

    def texts(self, video_id: int, start: float = -np.inf, end: float = np.inf) -> list[tuple[str, float, float, str]]:
        """A video's timed text lines (source, start, end, text), or those overlapping [start, end]."""
        return self._lines("source, t_start, t_end, text", video_id, start, end)

    def text_lines(self, video_id: int, start: float = -np.inf, end: float = np.inf, vectors: bool = True
                   ) -> tuple[list[tuple[str, float, float, str]], list[np.ndarray | None], list[int]]:
        """``texts`` plus each line's vector (float32; None for lines stored before lines had
        vectors, or all None without ``vectors``) and its rowid (the lexical table's key)."""
        if not (vectors and self._line_vectors):
            rows = self._lines("source, t_start, t_end, text, rowid", video_id, start, end)
            return [r[:4] for r in rows], [None] * len(rows), [r[4] for r in rows]
        rows = self._lines("source, t_start, t_end, text, vec, rowid", video_id, start, end)
        return ([r[:4] for r in rows],
                [None if r[4] is None else np.frombuffer(r[4], LINE_VECTOR_DTYPE).astype(np.float32) for r in rows],
                [r[5] for r in rows])

    @serialised
    def concepts(self, rows: Sequence[int]) -> list[str | None]:
        rows = [int(r) for r in rows]
        found = {}
        for a in range(0, len(rows), 500):  # one query per batch, within SQLite's parameter limit
            part = rows[a:a + 500]
            q = f"SELECT row, top_concepts FROM clips WHERE row IN ({','.join('?' * len(part))})"
            found.update(self.db.execute(q, part).fetchall())
        return [found.get(r) for r in rows]

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
