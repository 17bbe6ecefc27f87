"""The decoder fuzzer's driver, run as its own process: it imports the decoder once, then forks a
child per mutated input, so a crash (signal) or a hang is caught and pinned on that input.

    python fuzz_driver.py INPUTS_DIR OUT_JSON [TIMEOUT_S]

Each child probes the input, decodes frames (uniform and fps sampling), audio and subtitles; an
operation may succeed or raise DecodeError/ValueError (a clear, expected refusal). Anything else
(another exception type, a signal, a non-zero exit, no answer within the timeout) is a finding.
The parent never calls into the native core, so no thread pool exists before a fork.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from ivcr_engine import decode

EXPECTED = (decode.DecodeError, ValueError)


def run_one(path: str) -> list[str]:
    outcomes = []
    ops = [("probe", lambda: decode.probe(path)),
           ("frames", lambda: decode.decode_frames(path, decode.Uniform(4), size=(32, 32))),
           ("fps", lambda: decode.decode_frames(path, decode.Fps(4.0), size=24, crop=True, dtype="float32")),
           ("audio", lambda: decode.decode_audio(path)),
           ("subtitles", lambda: decode.read_subtitles(path))]
    for name, op in ops:
        try:
            op()
            outcomes.append(f"{name}:ok")
        except EXPECTED as exc:
            outcomes.append(f"{name}:{type(exc).__name__}")
        except BaseException as exc:  # a finding: report it, keep going
            outcomes.append(f"{name}:UNEXPECTED {type(exc).__name__}: {exc}"[:300])
    return outcomes


def main(folder: Path, out: Path, timeout: float) -> None:
    results = {}
    for path in sorted(folder.iterdir()):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one input, then _exit without interpreter teardown
            os.close(r)
            code = 0
            try:
                os.write(w, json.dumps(run_one(str(path))).encode())
            except BaseException:
                code = 3
            os._exit(code)
        os.close(w)
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.005)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = None
        data = os.read(r, 1 << 16)
        os.close(r)
        if status is None:
            results[path.name] = {"verdict": "hang"}
        elif os.WIFSIGNALED(status):
            results[path.name] = {"verdict": "crash", "signal": os.WTERMSIG(status)}
        elif os.WEXITSTATUS(status) != 0 or not data:
            results[path.name] = {"verdict": "crash", "exit": os.WEXITSTATUS(status)}
        else:
            outcomes = json.loads(data)
            bad = [o for o in outcomes if "UNEXPECTED" in o]
            results[path.name] = {"verdict": "unexpected" if bad else "ok", "outcomes": outcomes}
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 20.0)
