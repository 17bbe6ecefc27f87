"""Generated videos with text burned into the picture at known times (ffmpeg drawtext), for the
on-screen text (OCR) tests and the ingest benchmark. The background moves (ffmpeg's gradients
source: colour fields, no text of its own), so no two frames are alike and the captions sit on a
half-transparent box, as burned-in subtitles do."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FFMPEG = shutil.which("ffmpeg")
LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")  # Debian fonts-wqy-zenhei (the Makefile installs it)


@dataclass(frozen=True)
class Caption:
    start: float
    end: float
    text: str
    cjk: bool = False
    size: int = 30            # font size in pixels
    y: str = "h-th-40"       # drawtext's y expression (default: a subtitle line near the bottom)


def missing_tools() -> str | None:
    """Why these videos cannot be made here, or None."""
    if FFMPEG is None:
        return "ffmpeg not found"
    for font in (LATIN_FONT, CJK_FONT):
        if not font.is_file():
            return f"font {font} not found"
    return None


def make_video(path: Path, captions: list[Caption], duration: float, size: tuple[int, int] = (640, 360),
               fps: int = 25) -> Path:
    """A ``duration``-second H.264 video of ``size`` (w, h) showing each caption from its start
    (inclusive) to its end (exclusive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    filters = []
    for i, c in enumerate(captions):
        # the text goes through a file: no escaping of quotes, colons or CJK in the filter graph
        text_file = path.with_suffix(f".caption{i}.txt")
        text_file.write_text(c.text, encoding="utf-8")
        font = CJK_FONT if c.cjk else LATIN_FONT
        filters.append(f"drawtext=fontfile={font}:textfile={text_file}:fontsize={c.size}:fontcolor=white:"
                       f"box=1:boxcolor=black@0.6:boxborderw=8:x=(w-tw)/2:y={c.y}:"
                       f"enable='gte(t,{c.start})*lt(t,{c.end})'")
    w, h = size
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           f"gradients=s={w}x{h}:r={fps}:d={duration}:speed=0.02", "-vf", ",".join(filters) or "null",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(2 * fps), str(path)]
    subprocess.run(cmd, check=True)
    for i in range(len(captions)):
        path.with_suffix(f".caption{i}.txt").unlink()
    return path


def cer(got: str, want: str) -> float:
    """Character error rate: edit distance (insertions, deletions, substitutions) over the length
    of ``want``, ignoring spaces (the recogniser drops or adds spaces between words)."""
    a, b = "".join(got.split()), "".join(want.split())
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(1, len(b))
