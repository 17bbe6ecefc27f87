"""The folded text rows in float16: what the engine's exact stage pre-ranks a text query's
shortlist with on a large index (csrc/engine/ranking.cpp, ``Ranking::within_reach``).

The exact stage re-ranks each row's ``ranking.SHORTLIST`` videos on every text channel in float16:
concept, speech and subtitle, 2.3 KB a clip, read at random. At 1M clips that was a quarter of a
B=32 batch. A text query's channels share its embedding, so sum_c w_c <q_c, e_c> = <q, f> with
f = sum_c w_c e_c (the first stage's fold, ranking.first_stage_queries); f in float16 is one row of
770 bytes. The engine scores the shortlist on f, then re-ranks exactly only the videos that can
still be in the top k, so its answers (videos and scores) are those of the exact stage over the
whole shortlist:

- a clip's score on f is within 2^-10 |q| norms[r] of its exact score (ranking.h, kFoldedBound),
  with ``norms[r] = sum_c |w_c| |e_c[r]|`` written here beside the rows: float16 rounds each value of
  f by at most 2^-11 of it, and sum_i |q_i| |f_i| <= |q| |f| <= |q| norms[r];
- with T the k-th best of (score - bound), k videos score at least T exactly, so a video whose
  score + bound is below T cannot be in the exact top k.

On the benchmark corpus (encoder-e5, 1M clips) that keeps about 30 of 400 videos.

Files: ``first.<tag>.folded.<rows>.values.npy`` ((rows, dim) float16) and ``.norms.npy`` ((rows,)
float32), written last, so its presence marks complete rows (a killed build leaves a ``.tmp``).
Rows are appended and never rewritten: a later generation copies the previous one's rows and
folds only the added ones, and the engine reads a later generation's leading rows for a snapshot
whose own was replaced (first_stage.cpp's ``generation``). Rows whose fold leaves float16's range
are not written at all; the exact stage then reads every text channel, as without these rows.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from .first_stage import BLOCK, building, remove_superseded, row_counts

# folded float32 rows and their norms (sum_c |w_c| |e_c[r]|) for a slice or row numbers
FoldedReader = Callable[[slice | np.ndarray], tuple[np.ndarray, np.ndarray]]


def stem(tag: str) -> str:
    """The files' name before the row count (``tag``: the folded copy's, ranking.copy_tag)."""
    return f"first.{tag}.folded"


def part(folder: Path, tag: str, rows: int, name: str) -> Path:
    return folder / f"{stem(tag)}.{rows}.{name}.npy"


def generations(folder: Path, tag: str) -> list[int]:
    """Row counts of the complete folded rows of ``tag`` in ``folder``, ascending."""
    return [n for n in row_counts(folder, stem(tag), ".norms.npy") if part(folder, tag, n, "values").exists()]


def ensure(folder: Path, tag: str, rows: int, dim: int, read: FoldedReader) -> bool:
    """Write the folded rows of ``rows`` rows unless this generation or a later one is there (see
    the module's text); False when they leave float16's range and none are written."""
    if any(n >= rows for n in generations(folder, tag)):
        return True
    with building(folder, stem(tag)):
        if any(n >= rows for n in generations(folder, tag)):  # (written by another process meanwhile)
            return True
        older = [n for n in generations(folder, tag) if n < rows]
        done = _write(folder, tag, rows, dim, read, older[-1] if older else 0)
        if done:
            own = re.compile(rf"{re.escape(stem(tag))}\.(\d+)\.(?:values|norms)(?:\.tmp)?\.npy")
            remove_superseded(p for p in folder.glob(f"{stem(tag)}.*")
                              if (m := own.fullmatch(p.name)) and int(m[1]) < rows)
        return done


def _write(folder: Path, tag: str, rows: int, dim: int, read: FoldedReader, previous: int) -> bool:
    """Rows 0..previous from generation ``previous`` (when its shapes hold), the rest folded."""
    tmp = folder / f"{stem(tag)}.{rows}.values.tmp.npy"
    out_v = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows, dim))
    out_n = np.zeros(rows, np.float32)
    start = 0
    if previous:
        try:
            old_v = np.load(part(folder, tag, previous, "values"), mmap_mode="r")
            old_n = np.load(part(folder, tag, previous, "norms"))
            if old_v.shape == (previous, dim) and old_v.dtype == np.float16 and old_n.shape == (previous,):
                for a in range(0, previous, BLOCK):
                    out_v[a:min(a + BLOCK, previous)] = old_v[a:min(a + BLOCK, previous)]
                out_n[:previous] = old_n
                start = previous
        except (OSError, ValueError):  # unreadable: every row folded again
            start = 0
    with np.errstate(over="ignore"):
        for a in range(start, rows, BLOCK):
            block, norms = read(slice(a, min(a + BLOCK, rows)))
            half = block.astype(np.float16)
            if not (np.isfinite(half).all() and np.isfinite(norms).all()):
                del out_v
                tmp.unlink(missing_ok=True)
                return False
            out_v[a:a + len(block)], out_n[a:a + len(block)] = half, norms
    out_v.flush()
    del out_v
    tmp.replace(part(folder, tag, rows, "values"))
    tmp_n = folder / f"{stem(tag)}.{rows}.norms.tmp.npy"
    np.save(tmp_n, out_n)
    tmp_n.replace(part(folder, tag, rows, "norms"))
    return True
