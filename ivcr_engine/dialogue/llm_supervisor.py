"""The LLM's worker process, supervised: ``WorkerSupervisor`` starts ``llm_worker.py`` in a child
process, talks JSON lines with it, and survives what a native model can do to a process (a crash,
a hang past the reply timeout, an out-of-memory kill): the reply that hit it loses its sentence,
the worker is restarted with a back-off, and after too many failures in a row the supervisor gives
up and says so. The responder (gguf_responder.py) asks it for completions.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import select
import signal
import subprocess
import threading
import time

log = logging.getLogger("ivcr_engine.llm")

_TIMED_OUT = object()


class WorkerFailed(RuntimeError):
    """The model's worker process crashed, hung past its time limit, or could not start."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # "crash", "timeout", "start", "error" or "given up"


class WorkerSupervisor:
    """One worker process (llm_worker.py), its requests and its restarts.

    A failed request (the worker died: a native crash, SIGKILL, out of memory; or it took longer
    than ``timeout_s``) kills the worker and raises WorkerFailed; the next request starts a fresh
    one. Consecutive failures back off (the first restart is at once, then ``backoff_s``, doubling
    up to 30 s; a request that comes sooner is refused without waiting), and after ``max_failures``
    in a row the supervisor gives up: every later request is refused with a message that says so.
    A successful reply resets the count. Requests are serial (one llama.cpp context)."""

    def __init__(self, cmd: list[str], timeout_s: float = 20.0, start_timeout_s: float = 120.0,
                 backoff_s: float = 1.0, max_failures: int = 5):
        self.cmd = cmd
        self.timeout_s, self.start_timeout_s = timeout_s, start_timeout_s
        self.backoff_s, self.max_failures = backoff_s, max_failures
        self.failures: dict[str, int] = {"crash": 0, "timeout": 0, "start": 0, "error": 0}
        self.starts = 0
        self.consecutive = 0
        self.gave_up = ""
        self.info: dict = {}
        self.sent = threading.Event()  # set once each request is written (the kill tests wait on it)
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._next_start = 0.0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def request(self, payload: dict) -> dict:
        with self._lock:
            if self.gave_up:
                raise WorkerFailed("given up", self.gave_up)
            if self._proc is None:
                if time.monotonic() < self._next_start:
                    raise WorkerFailed("backoff", "the LLM worker is restarting after a failure")
                self._start()
            rid = next(self._ids)
            try:
                self.sent.clear()
                self._proc.stdin.write((json.dumps({"id": rid, **payload}) + "\n").encode("utf-8"))
                self._proc.stdin.flush()
                self.sent.set()
                reply = self._read_line(self.timeout_s)
            except OSError:  # the pipe broke: it died before or while reading the request
                reply = None
            if reply is None:
                raise self._failed("crash")
            if reply is _TIMED_OUT:
                raise self._failed("timeout")
            if reply.get("id") != rid:
                raise self._failed("error", f"the LLM worker answered request {reply.get('id')} for {rid}")
            if "error" in reply:  # a Python-level error inside the worker: it goes on
                self.failures["error"] += 1
                raise WorkerFailed("error", reply["error"])
            self.consecutive = 0
            return reply

    def start(self) -> None:
        """Start the worker now (the responder does at construction, so a build that cannot load
        the model is reported there); raises WorkerFailed."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        self.starts += 1
        self._buf = b""
        try:
            self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise self._failed("start", str(exc)) from None
        threading.Thread(target=self._drain_stderr, args=(self._proc,), daemon=True, name="llm-worker-stderr").start()
        ready = self._read_line(self.start_timeout_s)
        if not isinstance(ready, dict) or not ready.get("ready"):
            raise self._failed("start", self._why_dead())
        self.info = {k: v for k, v in ready.items() if k != "ready"}

    def _drain_stderr(self, proc: subprocess.Popen) -> None:
        """Keep the worker's stderr flowing (a full pipe would block it) and its last lines for
        the message when it dies."""
        proc.stderr_tail = []  # type: ignore[attr-defined]
        for line in proc.stderr:
            proc.stderr_tail = (proc.stderr_tail + [line.decode("utf-8", "replace").rstrip()])[-20:]

    def _read_line(self, timeout_s: float):
        """The worker's next JSON line; None if its output ended (it died), _TIMED_OUT if the time
        ran out first."""
        deadline = time.monotonic() + timeout_s
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return _TIMED_OUT
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _why_dead(self) -> str:
        proc = self._proc
        try:
            code = proc.wait(timeout=2)  # its output has ended: it is exiting
        except subprocess.TimeoutExpired:
            return f"no answer within {self.start_timeout_s:g} s"
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        time.sleep(0.05)  # let the stderr reader take the last lines
        tail = " | ".join(getattr(proc, "stderr_tail", [])[-3:])
        return f"{how}{': ' + tail if tail else ''}"

    def _failed(self, kind: str, detail: str | None = None) -> WorkerFailed:
        detail = detail or (self._why_dead() if kind == "crash" else f"no reply within {self.timeout_s:g} s")
        self._kill()
        self.failures[kind] += 1
        self.consecutive += 1
        delay = 0.0 if self.consecutive == 1 else min(self.backoff_s * 2 ** (self.consecutive - 2), 30.0)
        self._next_start = time.monotonic() + delay
        message = f"the LLM worker failed ({kind}: {detail})"
        if self.consecutive >= self.max_failures:
            self.gave_up = (f"the LLM worker failed {self.consecutive} times in a row (last: {kind}: {detail}); "
                            "replies go on without the model's words")
            log.error("%s", self.gave_up)
        else:
            log.warning("%s; restarting it%s", message, f" in {delay:g} s" if delay else "")
        return WorkerFailed(kind, message)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            self._kill()
