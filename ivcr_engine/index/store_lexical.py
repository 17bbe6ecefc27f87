"""The lexical table of an index store (``IndexStore`` inherits it): every timed text line's words
in an SQLite FTS5 table beside the lines, for BM25 search (lexical.py).

    lines_fts(terms)   rowid = the line's rowid in ``texts``; terms = words.indexed_text(text)

A video's lines and their words are written in the same transaction (store_writer.py), so the
table is exactly as crash-safe as the lines: a kill -9 leaves both or neither. ``meta`` records
the segmentation that built it (``lexical_version`` = words.VERSION); an index made before the
table existed, or under another segmentation, gets it (re)built in one transaction when a
writer opens it, on first open by a reader that can write, or by ``ivcr check --repair``
(check.py verifies it: one row per line, same rowids, current version). Every commit adds a
segment to the FTS5 index; the end of an ingest run merges them into one (``merge_lexical``).
"""
from __future__ import annotations

import sqlite3
from typing import Iterable

from . import words
from .shared_connection import serialised

TABLE = "lines_fts"
_CREATE = f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(terms, tokenize='{words.TOKENIZE}')"
VERSION_KEY = "lexical_version"


class LexicalTable:
    """Needs ``db``, ``_lock``, ``_meta()`` and ``set_meta()`` from the store."""

    def _open_lexical(self) -> None:
        """Create the table when missing and build it when it is not current (a read-only index
        keeps what it has: ``lexical_ready`` says whether it can be used)."""
        try:
            self.db.execute(_CREATE)
        except sqlite3.OperationalError:  # read-only file: search without the lexical channel
            return
        if not self.lexical_ready():
            try:
                self.build_lexical()
            except sqlite3.OperationalError:  # read-only, or another writer holds the lock
                pass

    @serialised
    def lexical_ready(self) -> bool:
        """Whether the table is current: built under this segmentation (counts are check.py's)."""
        try:
            return self._meta(VERSION_KEY) == words.VERSION and self._has_table()
        except sqlite3.OperationalError:
            return False

    def _has_table(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone() is not None

    def _index_lines(self, rows: Iterable[tuple[int, str]]) -> None:
        """Add (rowid, text) lines' words; called inside the transaction that adds the lines."""
        self.db.executemany(f"INSERT INTO {TABLE}(rowid, terms) VALUES (?, ?)",
                            [(int(r), words.indexed_text(t)) for r, t in rows])

    def build_lexical(self) -> int:
        """(Re)build the whole table from the stored lines in one transaction; returns the lines."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(_CREATE)
            self.db.execute(f"DELETE FROM {TABLE}")
            lines = self.db.execute("SELECT rowid, text FROM texts ORDER BY rowid").fetchall()
            self._index_lines(lines)
            self.set_meta(VERSION_KEY, words.VERSION)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.merge_lexical()  # one transaction of many lines still leaves several segments
        return len(lines)

    @serialised
    def lexical_segments(self) -> int:
        """How many segments the table's FTS5 index is in (0 without the table)."""
        if not self._has_table():
            return 0
        return int(self.db.execute(f"SELECT count(DISTINCT segid) FROM {TABLE}_idx").fetchone()[0])

    @serialised
    def merge_lexical(self) -> bool:
        """Merge the table's index into one segment (FTS5 'optimize') where it is in several; True
        when it merged. A query looks each of its words up in every segment, and each commit adds
        one (FTS5 merges them only by fours): per-video commits left 7-16 segments in a 6-line-a-
        video trial here, and on the benchmark's 600k lines, 5 segments against 1 took a new text's
        lookups in the engine from 0.17-0.18 to 0.25-0.27 ms. Merging 600k lines takes 0.45 s;
        the writer does it at the end of an ingest run (ingest.prepare_search) and after a rebuild."""
        if self.lexical_segments() <= 1:
            return False
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('optimize')")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return True

    def lexical_problems(self) -> list[str]:
        """What is wrong with the table against the lines (empty when it is current and whole)."""
        if not self._has_table():
            return [f"the lexical table ({TABLE}) is missing"]
        version = self._meta(VERSION_KEY)
        if version != words.VERSION:
            return [f"the lexical table was built by {version or 'nothing'}, not {words.VERSION}"]
        lines = {r for (r,) in self.db.execute("SELECT rowid FROM texts")}
        have = {r for (r,) in self.db.execute(f"SELECT rowid FROM {TABLE}")}
        out = []
        if lines - have:
            out.append(f"the lexical table lacks {len(lines - have)} text line(s)")
        if have - lines:
            out.append(f"the lexical table holds {len(have - lines)} row(s) of no text line")
        try:
            self.db.execute(f"INSERT INTO {TABLE}({TABLE}, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            out.append(f"the lexical table fails FTS5's integrity check ({exc})")
        return out

    @serialised
    def line_total(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM texts").fetchone()[0])

    @serialised
    def count_matching(self, match: str, cap: int) -> int:
        """How many lines match an FTS5 query, counted up to ``cap`` (reading at most that much
        of its doclists: a common word stops early)."""
        return int(self.db.execute(f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE {TABLE} MATCH ? LIMIT ?)",
                                   (match, int(cap))).fetchone()[0])

    @serialised
    def lines_with(self, match: str, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` lines matching an FTS5 query, as (line rowid, video id), by rowid."""
        return self.db.execute(f"SELECT f.rowid, t.video_id FROM {TABLE} f JOIN texts t ON t.rowid = f.rowid "
                               f"WHERE {TABLE} MATCH ? LIMIT ?", (match, int(limit))).fetchall()
