"""The writing half of an index store (``IndexStore`` inherits it): appending videos, aliases,
removals and a text rebuild's commit, each all or nothing.

A video's rows are appended to every row file and flushed first, then one SQLite transaction
records the video, its clips, its texts and the new row counts (store.py says why that order makes
a kill -9 harmless). ``write_lock`` keeps one writer, and ``ivcr check``, off the row files at a time.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InvalidArgument

if TYPE_CHECKING:
    from .store import VideoRecord

LINE_VECTOR_DTYPE = np.float16  # text line vectors, stored as BLOBs in the texts table


class StoreWriter:
    """Needs ``root``, ``db``, ``channels()``, ``row_count()``, ``vector_path()``, ``_clips_path()``,
    ``_video_rows()``, ``set_settings()``, ``_line_vectors`` and ``_index_lines()`` from the store."""

    def add_video(self, rec: VideoRecord) -> int:
        """Append one video's rows and record it; returns its id. All or nothing."""
        return self.add_videos([rec])[0]

    @contextlib.contextmanager
    def write_lock(self, wait: bool = True):
        """Exclusive lock on the row files (INDEX/write.lock), held by a writer from its first
        append to its commit and by `ivcr check`, so a check never trims (or reports as
        left over) rows a writer is about to commit."""
        with open(self.root / "write.lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise RuntimeError(f"index {self.root} is being written (an ingest is running); "
                                   "check it when that is done") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def add_videos(self, records: Sequence[VideoRecord]) -> list[int]:
        """Append several videos in one commit (one fsync per file): all or nothing."""
        with self.write_lock():
            return self._add_videos(records)

    def _add_videos(self, records: Sequence[VideoRecord]) -> list[int]:
        chans = self.channels()
        first_row = self.row_count()
        row = first_row
        blocks: dict[str, list[np.ndarray]] = {name: [] for name in chans}
        times = []
        for rec in records:
            if set(rec.vectors) != set(chans):
                raise InvalidArgument(f"video {rec.path}: vectors for {sorted(rec.vectors)} but the index has {sorted(chans)}")
            n = len(rec.clip_times)
            clip_times = np.asarray(rec.clip_times, np.float64).reshape(-1, 2)
            if n == 0 or np.any(clip_times[:, 1] < clip_times[:, 0]):
                raise InvalidArgument(f"video {rec.path}: needs at least one clip and clip ends >= starts")
            if rec.text_vectors is not None and len(rec.text_vectors) != len(rec.texts):
                raise InvalidArgument(f"video {rec.path}: {len(rec.text_vectors)} text vectors for {len(rec.texts)} lines")
            if rec.text_vectors is not None and not np.all(np.isfinite(rec.text_vectors)):
                raise InvalidArgument(f"video {rec.path}: a text line's vector has NaN or infinite values")
            for name, spec in chans.items():
                v = np.asarray(rec.vectors[name])
                if v.shape != (n, spec.dim):
                    raise InvalidArgument(f"video {rec.path}: channel {name!r} has shape {v.shape}, expected ({n}, {spec.dim})")
                if not np.all(np.isfinite(v)):
                    raise InvalidArgument(f"video {rec.path}: channel {name!r} has NaN or infinite values")
                blocks[name].append(v.astype(spec.dtype))
            times.append(clip_times)
        for name, spec in chans.items():
            self._append(self.vector_path(name), spec.dim * np.dtype(spec.dtype).itemsize, first_row, blocks[name])
        self._append(self._clips_path(), 16, first_row, times)
        ids = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for rec in records:
                n = len(rec.clip_times)
                concepts = list(rec.top_concepts) if rec.top_concepts is not None else [None] * n
                cur = self.db.execute(
                    "INSERT INTO videos(path, content_hash, duration, fps, width, height, first_row, n_clips, added_at,"
                    " info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rec.path, rec.content_hash, float(rec.duration), rec.fps, rec.width, rec.height, row, n,
                     time.time(), json.dumps(rec.info) if rec.info else None))
                vid = int(cur.lastrowid)
                self.db.executemany(
                    "INSERT INTO clips(row, video_id, t_start, t_end, top_concepts) VALUES (?, ?, ?, ?, ?)",
                    [(row + i, vid, float(a), float(b), concepts[i])
                     for i, (a, b) in enumerate(np.asarray(rec.clip_times, np.float64))])
                vecs = [None] * len(rec.texts) if rec.text_vectors is None else \
                    [np.asarray(v, LINE_VECTOR_DTYPE).tobytes() for v in rec.text_vectors]
                lines = []
                for (src, a, b, t), v in zip(rec.texts, vecs):
                    cur = self.db.execute("INSERT INTO texts(video_id, source, t_start, t_end, text, vec)"
                                          " VALUES (?, ?, ?, ?, ?, ?)", (vid, src, float(a), float(b), t, v))
                    lines.append((cur.lastrowid, t))
                self._index_lines(lines)  # their words (the lexical channel), same transaction (store_lexical.py)
                ids.append(vid)
                row += n
            self.db.execute("UPDATE channels SET rows = ?", (row,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return ids

    @staticmethod
    def _append(path: Path, row_bytes: int, first_row: int, blocks: list[np.ndarray]) -> None:
        with open(path, "ab") as f:
            f.truncate(first_row * row_bytes)  # drop bytes a killed ingest left past the committed rows
            for block in blocks:
                f.write(np.ascontiguousarray(block).tobytes())
            f.flush()
            os.fsync(f.fileno())

    def add_alias(self, path: str, video_id: int) -> None:
        """Record ``path`` as another name of a stored video (byte-identical content: no re-encoding)."""
        self.db.execute("INSERT OR REPLACE INTO aliases(path, video_id) VALUES (?, ?)", (path, int(video_id)))

    def remove_path(self, path: str, video_id: int | None = None) -> str | None:
        """Forget one path: an alias is dropped; a video's own path hands over to its first alias
        (the video stays); a video with no other name is tombstoned. Returns what happened."""
        path = str(path)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if video_id is None and self.db.execute("DELETE FROM aliases WHERE path = ?", (path,)).rowcount:
                self.db.execute("COMMIT")
                return "alias removed"
            got = self._video_rows("WHERE path = ? AND removed = 0" + (" AND id = ?" if video_id is not None else ""),
                                   (path,) if video_id is None else (path, int(video_id)))
            if not got:
                self.db.execute("COMMIT")
                return None
            vid = got[0]["id"]
            other = self.db.execute("SELECT path FROM aliases WHERE video_id = ? ORDER BY path LIMIT 1", (vid,)).fetchone()
            if other:
                self.db.execute("UPDATE videos SET path = ? WHERE id = ?", (other[0], vid))
                self.db.execute("DELETE FROM aliases WHERE path = ?", (other[0],))
                what = f"still indexed as {other[0]}"
            else:
                self.db.execute("UPDATE videos SET removed = 1 WHERE id = ?", (vid,))
                what = "removed"
            self.db.execute("COMMIT")
            return what
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def record_text_model(self, settings: dict, dims: Mapping[str, int], model: str, model_sha256: str,
                          clear: str, line_vectors: Mapping[int, np.ndarray] | None = None) -> None:
        """After a text rebuild replaced the row files: the new model of those channels, the
        lines' new vectors (rowid -> vector), the index's settings, and the rebuild marker
        ``clear`` removed, in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for name, dim in dims.items():
                self.db.execute("UPDATE channels SET dim = ?, model = ?, model_sha256 = ? WHERE name = ?",
                                (int(dim), model, model_sha256, name))
            if line_vectors and self._line_vectors:
                self.db.executemany("UPDATE texts SET vec = ? WHERE rowid = ?",
                                    [(np.asarray(v, LINE_VECTOR_DTYPE).tobytes(), int(r)) for r, v in line_vectors.items()])
            self.set_settings(settings)
            self.db.execute("DELETE FROM meta WHERE key = ?", (clear,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def remove_videos(self, ids: Iterable[int]) -> int:
        """Tombstone videos (their rows stay in the files and are excluded from every search)."""
        ids = [int(i) for i in ids]
        self.db.execute("BEGIN IMMEDIATE")
        cur = self.db.executemany("UPDATE videos SET removed = 1 WHERE id = ? AND removed = 0", [(i,) for i in ids])
        self.db.execute("COMMIT")
        return cur.rowcount
