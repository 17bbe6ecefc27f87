"""On-screen text of one video for the ``ocr`` channel: the frame size the text reader gets, the
clip-centre frames decoded in chunks and read, and the lines merged into timed lines.

A line seen in consecutive clips becomes one timed line from the start of its first clip to the
end of its last (the frames are clip centres, so that is as sharp as the grid allows); its text
is the reading seen most often (OCR of the same caption can differ by a character from frame to
frame).
"""
from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import decode
from ..models.ocr import TextLine, TextReader

OCR_LONG_SIDE = 640  # the reader sees frames scaled to this long side (up or down), sides rounded to 32
DECODE_CHUNK = 32    # frames decoded (and held) at a time: an hour of video never sits in memory at once
SAME_LINE = 0.8      # difflib ratio above which two readings in consecutive clips are one line


def ocr_frame_size(width: int, height: int, rotation: int = 0, long_side: int = OCR_LONG_SIDE) -> tuple[int, int]:
    """(height, width) for the text detector: the displayed frame (after rotation) scaled so its
    long side is ``long_side``, both sides rounded to multiples of 32 (the detector's stride).
    Small videos are scaled up: PP-OCR reads text best when letters are 15-40 px tall."""
    if width <= 0 or height <= 0:
        raise ValueError(f"the video has no frame size ({width}x{height})")
    if rotation % 180 == 90:
        width, height = height, width
    scale = long_side / max(width, height)
    return max(32, int(round(height * scale / 32)) * 32), max(32, int(round(width * scale / 32)) * 32)


def read_video_text(reader: TextReader, path: Path, info, times: Sequence[float],
                    long_side: int = OCR_LONG_SIDE) -> list[list[TextLine]]:
    """The text lines of the frames at ``times`` (seconds, ascending) of one video."""
    v = info.video
    size = ocr_frame_size(v.width, v.height, v.rotation, long_side)
    times = list(times)

    def chunks():
        for a in range(0, len(times), DECODE_CHUNK):
            yield decode.decode_frames(path, decode.Timestamps(times[a:a + DECODE_CHUNK]), size=size).frames

    out = [lines for chunk in reader.read_sequence(chunks()) for lines in chunk]
    if len(out) != len(times):  # the lines are matched to clips by position
        raise decode.DecodeError(f"{path}: decoded {len(out)} frames for {len(times)} clip centres")
    return out


def _key(text: str) -> str:
    return "".join(text.split()).casefold()


def timed_lines(clips: np.ndarray, per_clip: Sequence[Sequence[TextLine]]) -> list[tuple[float, float, str]]:
    """Merge the lines read in each clip into (start, end, text) lines: a line continues from the
    clip before when its reading matches one there (the same letters, ignoring case and spaces,
    or a difflib ratio >= SAME_LINE); ordered by start, then by reading order."""
    open_runs: list[dict] = []   # runs seen in the previous clip
    done: list[dict] = []
    for i, lines in enumerate(per_clip):
        still = []
        for order, line in enumerate(lines):
            key = _key(line.text)
            if not any(c.isalnum() for c in key):  # "■", "|", "--": shapes read as glyphs, nothing to find
                continue
            run = next((r for r in open_runs if r["key"] == key), None)
            if run is None:
                scored = [(difflib.SequenceMatcher(None, r["key"], key).ratio(), n) for n, r in enumerate(open_runs)]
                best = max(scored, default=(0.0, -1))
                run = open_runs[best[1]] if best[0] >= SAME_LINE else None
            if run is not None:
                open_runs.remove(run)
                run["last"] = i
            else:
                run = {"first": i, "last": i, "order": order, "readings": Counter(), "key": key}
            run["readings"][line.text] += 1
            still.append(run)
        done += open_runs  # not seen in this clip: the line ended with the clip before
        open_runs = still
    done += open_runs
    done.sort(key=lambda r: (r["first"], r["order"]))
    return [(float(clips[r["first"], 0]), float(clips[r["last"], 1]), r["readings"].most_common(1)[0][0]) for r in done]
