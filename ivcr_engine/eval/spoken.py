"""Spoken test clips with known sentence times, for measuring moment precision.

A clip is a generated test pattern with sentences spoken by espeak-ng at chosen start times
(and/or the same sentences as a sidecar .srt). The truth for a sentence is when it is audible:
its start plus the non-silent extent of espeak-ng's own output (measured from the wav, not
guessed), so a query that quotes or paraphrases one sentence has an exact moment to hit.
Needs the `espeak-ng` and `ffmpeg` programs (`make` installs both).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# Samples below this fraction of the utterance's peak count as silence when measuring its extent.
SILENCE_FRACTION = 0.02


@dataclass(frozen=True)
class Sentence:
    start: float  # seconds in the clip where the sentence becomes audible
    end: float    # ... and where it falls silent
    text: str


def tools_missing() -> list[str]:
    return [t for t in ("espeak-ng", "ffmpeg") if shutil.which(t) is None]


def audible_extent(wav_path: Path) -> tuple[float, float]:
    """(first, last) second of a mono 16-bit wav louder than SILENCE_FRACTION of its peak."""
    with wave.open(str(wav_path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{wav_path}: expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, channels)
    level = np.abs(samples.astype(np.float32)).max(axis=1)
    loud = np.flatnonzero(level > SILENCE_FRACTION * max(float(level.max()), 1.0))
    if len(loud) == 0:
        raise ValueError(f"{wav_path}: no audible sound")
    return loud[0] / rate, (loud[-1] + 1) / rate


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_spoken_video(path: str | Path, sentences: Sequence[tuple[float, str]], duration: float,
                      pattern: str = "testsrc", audio: bool = True, srt: bool = False) -> list[Sentence]:
    """Write a ``duration``-second clip at ``path`` where each (start, text) sentence is spoken
    from ``start`` seconds (``audio``) and/or shown by a sidecar ``.srt`` beside it (``srt``, cues
    at the same audible times). Returns each sentence's audible [start, end] (the truth)."""
    missing = tools_missing()
    if missing:
        raise RuntimeError(f"spoken clips need {' and '.join(missing)} (make installs them)")
    if not (audio or srt):
        raise ValueError("a spoken clip needs audio, a sidecar .srt, or both")
    path = Path(path)
    truth: list[Sentence] = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs, filters = [], []
        for i, (start, text) in enumerate(sentences):
            wav = Path(tmp) / f"s{i}.wav"
            subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True)
            a, b = audible_extent(wav)
            if start + b > duration:
                raise ValueError(f"sentence {i} ends at {start + b:.2f}s, after the clip's {duration}s")
            truth.append(Sentence(round(float(start + a), 3), round(float(start + b), 3), text))
            inputs += ["-i", str(wav)]
            filters.append(f"[{i + 1}:a]aresample=16000,adelay={int(round(start * 1000))}:all=1[a{i}]")
        video = ["-f", "lavfi", "-i", f"{pattern}=size=160x120:rate=10:duration={duration}"]
        if audio:
            mix = "".join(f"[a{i}]" for i in range(len(sentences))) + f"amix=inputs={len(sentences)}:normalize=0[aout]"
            cmd = [*video, *inputs, "-filter_complex", ";".join(filters + [mix]), "-map", "0:v", "-map", "[aout]",
                   "-c:a", "aac"]
        else:
            cmd = video
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *cmd, "-c:v", "libx264", "-preset", "ultrafast",
                        "-t", str(duration), str(path)], check=True)
    if srt:
        cues = [f"{n}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.text}\n" for n, s in enumerate(truth, 1)]
        path.with_suffix(".srt").write_text("\n".join(cues), encoding="utf-8")
    return truth
