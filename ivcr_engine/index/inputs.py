"""What ``ivcr index`` is given: folders, files and lists of videos, and each file's identity.

A list (.txt: one path per line, '#' comments; .jsonl: {"path": ...} per line) is read the same way
wherever it appears; its relative paths are relative to it. A file's identity is its content, so a
renamed copy is recognised as the same video (ingest.py aliases it).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from ..errors import InvalidArgument

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
MANIFEST_SUFFIXES = {".txt", ".jsonl"}


def content_hash(path: Path, block: int = 1 << 22) -> str:
    """Identity of a file's content: its size and the BLAKE2b of its first and last 4 MiB. Cheap on
    long videos, and a changed file (re-encoded, trimmed, replaced) gets a new identity."""
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(block, size - block))
            h.update(f.read(block))
    return h.hexdigest()


def collect_videos(inputs: Iterable[str | Path], failed: list | None = None) -> list[Path]:
    """Folders (searched recursively), single files, and manifests: .txt (one path per line, '#'
    comments) or .jsonl ({"path": ...} per line); relative paths in a manifest are relative to the
    manifest. A manifest is read the same way wherever it appears, given directly or found in a
    folder (and may name folders or other manifests). A manifest that cannot be read is appended
    to ``failed`` as (path, why) when given, else raised as a ValueError."""
    out: list[Path] = []
    reading: set[Path] = set()  # manifests being read: one that lists itself is not followed again

    def add(p: Path) -> None:
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES | MANIFEST_SUFFIXES:
                    add(q)
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            key = p.resolve()
            if key in reading:
                return
            reading.add(key)
            try:
                for entry in read_video_list(p):
                    add(entry)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                if failed is None:
                    raise InvalidArgument(f"manifest {p}: {exc}") from exc
                failed.append((str(p), f"unreadable manifest: {exc}"))
        else:
            out.append(p)

    for item in inputs:
        add(Path(item))
    seen, unique = set(), []
    for p in out:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(Path(key))
    return unique


def read_video_list(p: Path) -> list[Path]:
    """The paths a .txt or .jsonl manifest lists, relative to the manifest's folder."""
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".txt":
        lines = [l.strip() for l in text.splitlines()]
        return [p.parent / l for l in lines if l and not l.startswith("#")]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise InvalidArgument(f"line {n} has no \"path\" string")
            out.append(p.parent / entry["path"])
    return out
