"""Two builds of libivcr, A/B, on the 1M-clip encoder-e5 corpus (synthetic_index.py): the engine
as it stands (the installed library) against the one built from a git revision, in alternating
processes, so both meet the same box in the same minutes. Each process, for its library
(``IVCR_LIBIVCR``): the native encoder alone and a whole ``ivcr_search`` (k=10, no moments),
one ActivityNet sentence at a time; the video ranking of the Python path's query rows at B=1 and
at B=32. p50s in ms; the table gives each library's median over its rounds and base / new.

``python benchmarks/ab_libivcr.py --base REV [--rounds 3]``

The base is built engine-only (``IVCR_ENGINE_ONLY``, as the suite's sanitizer runs build it) from
``git archive REV`` into .cache/ab/<commit>, once. A change that is not in libivcr (the Python
face, the bindings) is the same on both sides.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "ab"


def build_base(rev: str) -> Path:
    sha = subprocess.run(["git", "-C", REPO, "rev-parse", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    root = CACHE / sha
    lib = root / "build" / "libivcr.so"
    if lib.exists():
        return lib
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", REPO, "archive", sha], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(src, filter="data")
    subprocess.run(["cmake", "-S", src, "-B", root / "build", "-DIVCR_ENGINE_ONLY=ON",
                    f"-DPython_EXECUTABLE={sys.executable}"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", root / "build", "--target", "ivcr", "-j", str(os.cpu_count() or 2)],
                   check=True, stdout=subprocess.DEVNULL)
    return lib


def measure() -> dict:
    """This process's figures, on the library IVCR_LIBIVCR names."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_engine import activitynet_sentences
    from synthetic_index import open_index

    from ivcr_engine.index import Index

    shared = REPO.parent / "shared" / "data"
    index = Index(open_index("encoder-e5", shared), prefault=True)
    nat = index.native
    sentences = activitynet_sentences(shared, 40)
    rows = [index.encode_queries([s]) for s in sentences]
    batch = {c: np.concatenate([r[c] for r in rows[:32]]) for c in rows[0]}

    def p50(fn, cases) -> float:
        fn(cases[0])  # untimed: warms the page cache and the pool
        times = []
        for c in cases:
            t0 = time.perf_counter()
            fn(c)
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1000

    out = {
        "native encoder, B=1": p50(lambda s: nat.encode([s]), sentences),
        "ivcr_search (encoder + ranking), k=10": p50(lambda s: nat.search(s, 10, moments=0, evidence=False),
                                                      sentences),
        "video ranking of Python rows, B=1": p50(lambda r: index.rank_videos(r, 10), rows),
        "video ranking, B=32 (per batch)": p50(lambda b: index.rank_videos(b, 10), [batch] * 6),
    }
    index.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="git revision of the baseline libivcr")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return
    if not args.base:
        ap.error("--base REV is required")
    from ivcr_engine.native import library_path

    libs = {"base": build_base(args.base), "new": library_path()}
    got: dict[str, list[dict]] = {"base": [], "new": []}
    for r in range(args.rounds):
        for side in ("base", "new") if r % 2 == 0 else ("new", "base"):
            env = dict(os.environ, IVCR_LIBIVCR=str(libs[side]))
            out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True, capture_output=True,
                                 text=True).stdout
            got[side].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {r + 1} {side}: " + ", ".join(f"{v:.2f}" for v in got[side][-1].values()), flush=True)

    def median(side: str, key: str) -> float:
        vals = sorted(x[key] for x in got[side])
        return vals[len(vals) // 2]

    print(f"\nbase {args.base} ({libs['base']}) against new ({libs['new']}), {args.rounds} rounds, p50 ms")
    print("| case | base | new | base / new |\n|---|---|---|---|")
    for key in got["new"][0]:
        b, n = median("base", key), median("new", key)
        print(f"| {key} | {b:.2f} | {n:.2f} | {b / n:.2f}x |")


if __name__ == "__main__":
    main()
