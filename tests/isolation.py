"""Tests marked ``isolated`` run in a pytest process of their own.

They drive optional native run times (llama.cpp in-process) that can kill the interpreter: an
instruction this CPU lacks, a segfault in a kernel. Run in the suite's own process, one such crash
ends the whole run with nothing reported; here the child's death is that one test's failure, by
name and signal, and the suite goes on. The child is a fresh interpreter (not a fork: the parent
has thread pools that a fork would copy mid-lock), so its fixtures are set up there.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from _pytest.reports import TestReport

CHILD_ENV = "IVCR_ISOLATED_CHILD"
TIMEOUT_S = 600
_SKIP_LINE = re.compile(r"^SKIPPED \[\d+\] (?P<where>[^:]+):(?P<line>\d+): (?P<reason>.*)$", re.M)


def pytest_configure(config):
    config.addinivalue_line("markers", "isolated: run in a subprocess of its own (native code that can crash "
                                       "the interpreter); a crash fails that test, not the suite")


def _run_child(item) -> tuple[str, object, str, float]:
    """(outcome, longrepr, output, seconds) of the test run alone in a child pytest."""
    rootdir = str(item.config.rootpath)
    cmd = [sys.executable, "-m", "pytest", item.nodeid, "-q", "-rs", "--no-header", "-p", "no:cacheprovider",
           "-p", "no:randomly", f"--rootdir={rootdir}"]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=rootdir, env={**os.environ, CHILD_ENV: "1"}, capture_output=True, text=True,
                             timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
        return "failed", f"isolated test: no result within {TIMEOUT_S} s\n{text[-4000:]}", text, time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    text = out.stdout + out.stderr
    if out.returncode < 0:
        sig = signal.Signals(-out.returncode).name
        return "failed", f"isolated test: the test process was killed by {sig}\n{text[-4000:]}", text, seconds
    if out.returncode == 0:
        skip = _SKIP_LINE.search(out.stdout)
        if skip and " passed" not in out.stdout:
            return "skipped", (skip["where"], int(skip["line"]), f"Skipped: {skip['reason']}"), text, seconds
        return "passed", None, text, seconds
    return "failed", f"isolated test: exit status {out.returncode}\n{text[-6000:]}", text, seconds


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker("isolated") is None or os.environ.get(CHILD_ENV):
        return None  # the ordinary protocol (and the child's own run)
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    outcome, longrepr, output, seconds = _run_child(item)
    keywords = {k: 1 for k in item.keywords}

    def report(when: str, result: str, rep=None, duration: float = 0.0) -> None:
        ihook.pytest_runtest_logreport(report=TestReport(
            item.nodeid, item.location, keywords, result, rep, when,
            sections=[("Captured output (isolated child)", output)] if when == "call" else [], duration=duration))

    if outcome == "skipped":
        report("setup", "skipped", longrepr)
    else:
        report("setup", "passed")
        report("call", outcome, longrepr, seconds)
    report("teardown", "passed")
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
