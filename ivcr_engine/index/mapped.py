"""One committed snapshot of an index folder, mapped for reading: the rows of every channel and
the clip times, the video records, and the exact fused-scan corpus over them.

A ``Mapped`` is immutable once made; an index that sees new commits maps a new one and swaps the
reference, so a search that started on the old view finishes on it.
"""
from __future__ import annotations

import logging
import mmap
import os
from dataclasses import dataclass

import numpy as np

from ..corpus import Corpus
from .store import IndexStore, Snapshot

log = logging.getLogger("ivcr.index")

# Prefault only an index whose rows take at most this share of the machine's memory: a larger one
# would push itself (and everything else) out of the page cache while it is read in.
PREFAULT_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Mapped:
    snapshot: Snapshot
    videos: list            # ref -> video record (removed ones stay, always denied)
    offsets: np.ndarray     # video ref -> its first row; offsets[-1] = rows
    channels: dict          # name -> (rows, d) memory-mapped vectors
    corpus: Corpus          # the exact fused scan over ``channels``
    removed: np.ndarray     # ref -> removed
    clip_start: np.ndarray
    clip_end: np.ndarray
    prefaulted: bool

    def plain_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Clip starts and ends as plain ndarray views of the same mapping (indexing np.memmap's
        subclass costs more than the few rows a moment reads)."""
        return np.asarray(self.clip_start), np.asarray(self.clip_end)

    def clip_rows(self, video: int, start: float = -np.inf, end: float = np.inf, overlap: bool = True) -> np.ndarray:
        """Rows of one video's clips overlapping [start, end] (or lying inside it)."""
        a, b = self.plain_times()
        rows = np.arange(self.offsets[video], self.offsets[video + 1])
        a, b = a[rows], b[rows]
        keep = (b > start) & (a < end) if overlap else (a >= start - 1e-6) & (b <= end + 1e-6)
        return rows[keep]


def map_snapshot(store: IndexStore, snap: Snapshot, prefault: bool) -> Mapped:
    """Map exactly the rows of one committed snapshot (never by file size).

    ``prefault``: fault every row into this process now, for a long-running server (the exact
    stage reads a shortlist's rows at random, and a row first touched costs a page fault; the
    figures are in docs/BENCHMARKS.md). An index larger than PREFAULT_MEMORY_SHARE of the
    machine's memory is not prefaulted (``Mapped.prefaulted`` says)."""
    videos = list(snap.videos)
    offsets = np.array([v["first_row"] for v in videos] + [snap.rows], np.int64)
    times = store.clip_times(snap.rows)
    channels = {name: store.vectors(name, snap.rows) for name in snap.channels}
    prefaulted = prefault and fits_in_memory(sum(a.nbytes for a in (*channels.values(), times)))
    if prefault and not prefaulted:
        log.warning("index %s: not prefaulted, its rows would take more than %d %% of this machine's memory",
                    store.root, round(PREFAULT_MEMORY_SHARE * 100))
    if prefaulted:
        for rows in (*channels.values(), times):
            populate(rows)
    return Mapped(snapshot=snap, videos=videos, offsets=offsets, channels=channels, corpus=Corpus(channels, offsets),
                  removed=np.array([bool(v["removed"]) for v in videos], bool),
                  clip_start=times[:, 0], clip_end=times[:, 1], prefaulted=prefaulted)


def populate(rows: np.ndarray) -> None:
    """Fault a memory-mapped array's pages into this process now (MADV_POPULATE_READ, Linux 5.14+;
    elsewhere a read-ahead hint), so later random reads of it cost no page faults."""
    m = getattr(rows, "_mmap", None)
    if m is None:
        return
    try:
        m.madvise(_MADV_POPULATE_READ)
    except (OSError, ValueError):
        m.madvise(mmap.MADV_WILLNEED)


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Python < 3.13 lacks the name


def fits_in_memory(nbytes: int) -> bool:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return False
    return nbytes <= PREFAULT_MEMORY_SHARE * total
