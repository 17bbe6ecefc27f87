"""A bounded mutation fuzzer for the decoder: 300 mutated copies (byte flips, truncations, zeroed
and duplicated ranges, random insertions, smashed headers) of three tiny generated videos with
audio and subtitles, each decoded in its own forked process (fuzz_driver.py) so that a crash or a
hang is caught and named. Every input must end in a result or a clear DecodeError/ValueError."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import media

PER_SEED = 100


def seeds(folder: Path) -> list[Path]:
    srt = folder / "cues.srt"
    srt.write_text("1\n00:00:00,200 --> 00:00:01,000\nhello there\n\n2\n00:00:01,200 --> 00:00:01,900\nbye now\n")
    src = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=16000:duration=2"]
    made = {"seed.mp4": src + ["-i", str(srt), "-c:v", "libx264", "-g", "5", "-c:a", "aac", "-c:s", "mov_text",
                               "-shortest"],
            "seed.mkv": src + ["-i", str(srt), "-c:v", "libx264", "-g", "5", "-c:a", "libopus", "-c:s", "srt",
                               "-shortest"],
            "seed.mpg": src + ["-c:v", "mpeg2video", "-g", "5", "-c:a", "mp2", "-shortest", "-f", "vob"]}
    out = []
    for name, args in made.items():
        path = folder / name
        subprocess.run([media.FFMPEG, "-y", "-loglevel", "error", *args, str(path)], check=True)
        out.append(path)
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(6)
    if kind == 0:    # flip a few bytes
        for i in rng.integers(0, len(b), size=rng.integers(1, 20)):
            b[i] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncate
        b = b[:rng.integers(0, len(b))]
    elif kind == 2:  # zero a range
        a = int(rng.integers(0, len(b)))
        b[a:a + int(rng.integers(1, 4096))] = bytes(min(len(b) - a, 4096))[:len(b[a:a + 4096])]
    elif kind == 3:  # duplicate a chunk somewhere else
        a, n, at = int(rng.integers(0, len(b))), int(rng.integers(1, 2048)), int(rng.integers(0, len(b)))
        b[at:at] = b[a:a + n]
    elif kind == 4:  # insert random bytes
        at = int(rng.integers(0, len(b)))
        b[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 512)), dtype=np.uint8).tobytes()
    else:            # smash the header
        n = int(rng.integers(4, 128))
        b[:n] = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
    return bytes(b)


def test_mutated_videos_never_crash_or_hang_the_decoder(tmp_path):
    if media.FFMPEG is None:
        pytest.skip("ffmpeg CLI not installed")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(20251125)  # fixed: a finding reproduces
    for seed in seeds(tmp_path):
        data = seed.read_bytes()
        for i in range(PER_SEED):
            (inputs / f"{seed.stem}-{seed.suffix[1:]}-{i:03d}{seed.suffix}").write_bytes(mutate(data, rng))
    out = tmp_path / "results.json"
    driver = Path(__file__).with_name("fuzz_driver.py")
    subprocess.run([sys.executable, str(driver), str(inputs), str(out), "20"], check=True, timeout=600)
    results = json.loads(out.read_text())
    assert len(results) == 3 * PER_SEED
    findings = {name: r for name, r in results.items() if r["verdict"] != "ok"}
    assert findings == {}, list(findings.items())[:5]
    decoded = sum(any(o == "frames:ok" for o in r["outcomes"]) for r in results.values())
    refused = sum(any(o == "frames:DecodeError" for o in r["outcomes"]) for r in results.values())
    print(f"fuzz: {len(results)} mutated inputs, frames decoded from {decoded}, refused clearly for {refused}")
    assert decoded > 0 and refused > 0  # the mutations reach both outcomes
