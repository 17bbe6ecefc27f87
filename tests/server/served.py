"""A real `ivcr serve` subprocess on 127.0.0.1 (the server tests and benchmarks/bench_serve.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A real `ivcr serve` subprocess on 127.0.0.1."""

    def __init__(self, index: Path, sessions: Path, log: Path, *extra: str, wait_s: float = 120):
        self.log = log
        for _ in range(3):  # a free port can be taken by another process before the server binds it
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            cmd = [str(Path(sys.executable).with_name("ivcr")), "serve", "--index", str(index), "--port",
                   str(self.port), "--sessions", str(sessions), *extra]
            start = log.stat().st_size if log.exists() else 0
            self.proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=dict(os.environ))
            if self._wait(wait_s):
                return
            if "address already in use" not in log.read_bytes()[start:].decode(errors="replace"):
                break
        raise RuntimeError(f"ivcr serve did not come up (exit {self.proc.returncode}): {log.read_text()[-2000:]}")

    def _wait(self, wait_s: float) -> bool:
        import httpx

        for _ in range(int(wait_s * 10)):  # bounded: the index, the encoder and the warm-up search
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        return False

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def metric_samples(text: str) -> dict:
    """/metrics as Prometheus's own parser reads it: {(sample name, sorted label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
