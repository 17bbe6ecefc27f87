"""`ivcr serve` under load against the same serving stack in-process (issue 22), in one test per
mode (micro-batching off / on), on the synthetic 100k-video / 1M-clip index made of real encoder
outputs (synthetic_index.py):

1. in-process: ``serving_stack()`` (what ``ivcr serve`` runs: SQLite sessions, prefaulted index,
   candidate moments, the micro-batcher unless off) driven by N threads, one per simulated client;
2. then, with that closed, a real ``ivcr serve`` subprocess on loopback driven by the same
   sessions from a minimal keep-alive HTTP client (http_load.py) in up to 4 client processes.

N = 1, 8, 64 clients, each running scripted sessions (create, four turns, read the history back)
one after the other; every (mode, N) runs the same fixed sessions on both sides, on sentences no
earlier run used (the query encoder's cache sees each text once). For each (mode, N): turns/s and
p50 / p99 per turn on both sides, their ratio, the CPU a turn costs the server process
(/proc CPU clock of the server's pid over the load, sessions' create and history reads included)
and the engine in-process (``time.process_time()`` over the same load), and the difference: what
HTTP, ASGI and JSON add. Issue 22's targets: server CPU beyond the engine's <= 1.5 ms a turn;
HTTP turns/s >= 0.8x in-process at N=8 and N=64; p99 at N=8 <= 100 ms; zero failed or lost
turns. Only the last is asserted (timings on a shared 2-core box are too noisy to gate on).

Bounded: each (mode, N) side sends a fixed number of turns under a time limit.
"""
from __future__ import annotations

import gc
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from http_load import SESSION_TURNS, client_process, script, warm_process
from synthetic_index import open_index

pytest.importorskip("httpx")  # Served polls /healthz with it (the load itself uses http_load.py)
from tests.server.served import Served

TABLE = "ivcr serve vs the same serving stack in-process (100k videos / 1M clips, loopback HTTP, issue 22)"
CONCURRENCY = (1, 8, 64)
MIN_TURNS = 512       # per (mode, N) and side: each client runs MIN_TURNS / (4 N) sessions in a row
WARM_SESSIONS = 4     # before the measured runs, on sentences of their own
RUN_LIMIT_S = 300     # per (mode, N) and side
CLIENT_PROCS = 4
IDLE_SETTLE_S, IDLE_S = 3.0, 4.0  # the server's idle CPU, measured after the warm-up settled
MAX_PAIRS = 1500


@pytest.fixture(scope="module")
def sentences(shared_data):
    data = json.loads((shared_data / "annotations" / "activitynet_captions" / "val.json").read_text())
    pairs = [[x.strip().rstrip(".").lower() for x in item["sentences"][:2]]
             for item in list(data.values())[:MAX_PAIRS] if len(item["sentences"]) >= 2]
    need = sum(max(1, MIN_TURNS // (n * SESSION_TURNS)) * n for n in CONCURRENCY) + WARM_SESSIONS
    assert len(pairs) >= need, f"{len(pairs)} sentence pairs for {need} sessions"
    return pairs


@pytest.fixture(scope="module")
def client_pool():
    """The HTTP client processes, forked once and before any engine is opened in this process (a
    small fork, no engine threads in the children)."""
    with ProcessPoolExecutor(CLIENT_PROCS, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(warm_process, range(CLIENT_PROCS)))  # a fork pool starts all its workers at once
        yield pool


def plans(sentences) -> tuple[list[list], dict[int, list[list]]]:
    """The warm-up and, for each N, N clients' session lists: client i's r-th session is pair
    offset + r * N + i, each N on a block of pairs of its own (the same plan for both sides)."""
    warm = [[p] for p in sentences[-WARM_SESSIONS:]]
    out, offset = {}, 0
    for n in CONCURRENCY:
        rounds = max(1, MIN_TURNS // (n * SESSION_TURNS))
        out[n] = [[sentences[offset + r * n + i] for r in range(rounds)] for i in range(n)]
        offset += rounds * n
    return warm, out


# -- CPU clocks ------------------------------------------------------------------------------
def process_cpu_s(pid: int) -> float:
    """CPU time (user + system, every thread) of another process: its POSIX CPU clock (ns), else
    /proc/<pid>/stat in clock ticks."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu_s(pid: int) -> float:
    """CPU time of a process's main thread (the server's event loop: uvicorn, FastAPI, JSON)."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9


# -- the two sides ---------------------------------------------------------------------------
def engine_load(manager, slots: list[list]) -> dict:
    """Each slot's sessions on a thread of its own, straight on the SessionManager."""
    latencies: list[float] = []
    failures: list[str] = []
    kept = [0]
    lock = threading.Lock()

    def client(pairs):
        for pair in pairs:
            try:
                sid = manager.create()
                for text in script(pair):
                    t0 = time.perf_counter()
                    manager.ask(sid, text)
                    latencies.append(time.perf_counter() - t0)
                n = len(manager.state(sid).turns)
                with lock:
                    kept[0] += n
                if n != SESSION_TURNS:
                    failures.append(f"session {sid} kept {n} of {SESSION_TURNS} turns")
            except Exception as exc:  # noqa: BLE001  (any error fails that session, counted)
                failures.append(f"{type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=client, args=(pairs,), daemon=True) for pairs in slots]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    deadline = t0 + RUN_LIMIT_S
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if any(t.is_alive() for t in threads):
        failures.append(f"time limit ({RUN_LIMIT_S} s) reached")
    return {"latencies": latencies, "failures": failures, "kept": kept[0], "wall": wall, "cpu": cpu}


def http_load(pool, server, slots: list[list]) -> dict:
    """The slots spread over up to CLIENT_PROCS client processes; the server's CPU clock read
    around the whole load."""
    procs = min(CLIENT_PROCS, len(slots))
    parts = [slots[p::procs] for p in range(procs)]
    pid, port = server.proc.pid, server.port
    cpu0, loop0 = process_cpu_s(pid), main_thread_cpu_s(pid)
    results = list(pool.map(client_process, ["127.0.0.1"] * procs, [port] * procs, parts,
                            [RUN_LIMIT_S] * procs, timeout=RUN_LIMIT_S + 60))
    failures = [x for r in results for x in r["failures"]]
    try:
        cpu, loop = process_cpu_s(pid) - cpu0, main_thread_cpu_s(pid) - loop0
    except OSError:  # the server is gone: its turns failed, counted below
        cpu = loop = float("nan")
        failures.append(f"the server process exited during the load (exit code {server.proc.poll()})")
    return {"latencies": [x for r in results for x in r["latencies"]],
            "failures": failures,
            "kept": sum(r["kept"] for r in results),
            "wall": max(r["end"] for r in results) - min(r["start"] for r in results),
            "cpu": cpu, "loop_cpu": loop, "client_cpu": sum(r["client_cpu_s"] for r in results),
            "connects": sum(r["connects"] for r in results)}


@pytest.mark.parametrize("mode", ["off", "on"])
def test_serve_vs_engine(mode, sentences, record, tmp_path, shared_data, client_pool, monkeypatch):
    from ivcr_engine.index.batching import BatchingIndex
    from ivcr_engine.server import serving_stack

    root = open_index("encoder", shared_data)
    warm, plan = plans(sentences)

    # 1. in-process, on exactly what the server runs
    manager, live = serving_stack(root, sessions_db=tmp_path / "engine-sessions.sqlite",
                                  batching=False if mode == "off" else None)
    try:
        if mode == "on" and not live.batching:
            pytest.fail("micro-batching is not available on this index in-process")
        engine_load(manager, warm)
        engine = {n: engine_load(manager, plan[n]) for n in CONCURRENCY}
    finally:
        manager.close()
        if isinstance(manager.engine.index, BatchingIndex):
            manager.engine.index.close()
    del manager, live
    gc.collect()

    # 2. over HTTP, the same sessions (a native crash of the server prints its stacks to serve.log)
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    server = Served(root, tmp_path / "sessions.sqlite", tmp_path / "serve.log",
                    *(["--no-batching"] if mode == "off" else []), wait_s=900)
    try:
        log = server.log.read_text()
        if mode == "on" and "micro-batching on" not in log:
            pytest.fail("micro-batching is not available on this index (the server said: "
                        + next((l for l in log.splitlines() if "micro-batching" in l), "nothing") + ")")
        http_load(client_pool, server, warm)
        time.sleep(IDLE_SETTLE_S)  # the warm-up's tail (>10 ms of CPU a second at first) is not idle
        c0 = process_cpu_s(server.proc.pid)
        time.sleep(IDLE_S)
        idle_ms_s = (process_cpu_s(server.proc.pid) - c0) / IDLE_S * 1000
        web = {n: http_load(client_pool, server, plan[n]) for n in CONCURRENCY}
        exit_code = server.proc.poll()  # None: still up after the load, as it should be
    finally:
        server.stop()
    log_tail = server.log.read_text()[-3000:]

    # 3. one row per (mode, N)
    for n in CONCURRENCY:
        e, h = engine[n], web[n]
        row = f"N={n:>2} batching {mode}"
        e_ms, h_ms = np.array(e["latencies"]) * 1000, np.array(h["latencies"]) * 1000
        e_tps = len(e["latencies"]) / e["wall"]
        h_tps = len(h["latencies"]) / h["wall"]
        turns = len(h["latencies"]) or 1
        e_cpu = e["cpu"] / (len(e["latencies"]) or 1) * 1000
        h_cpu = h["cpu"] / turns * 1000
        record.put(TABLE, row, "HTTP turns/s", h_tps)
        record.put(TABLE, row, "in-process turns/s", e_tps)
        record.put(TABLE, row, "HTTP / in-process", h_tps / e_tps)
        record.put(TABLE, row, "HTTP p50 ms", float(np.percentile(h_ms, 50)) if len(h_ms) else float("nan"))
        record.put(TABLE, row, "HTTP p99 ms", float(np.percentile(h_ms, 99)) if len(h_ms) else float("nan"))
        record.put(TABLE, row, "in-process p50 ms", float(np.percentile(e_ms, 50)) if len(e_ms) else float("nan"))
        record.put(TABLE, row, "in-process p99 ms", float(np.percentile(e_ms, 99)) if len(e_ms) else float("nan"))
        record.put(TABLE, row, "server CPU ms/turn", h_cpu)
        record.put(TABLE, row, "engine CPU ms/turn", e_cpu)
        record.put(TABLE, row, "beyond engine ms/turn", h_cpu - e_cpu)
        record.put(TABLE, row, "server event-loop thread ms/turn", h["loop_cpu"] / turns * 1000)
        record.put(TABLE, row, "client CPU ms/turn", h["client_cpu"] / turns * 1000)
        record.put(TABLE, row, "turns", f"{len(h['latencies'])} / {len(e['latencies'])}")
    record.note(TABLE, f"batching {mode}: server idle {idle_ms_s:.2f} ms of CPU a second (its background: live index "
                       f"checks, session sweeps, uvicorn's timers); connections opened per (N): "
                       + ", ".join(f"{n}: {web[n]['connects']}" for n in CONCURRENCY))
    record.note(TABLE, "targets (issue 22): beyond engine <= 1.5 ms a turn; HTTP / in-process >= 0.8 at N=8 and "
                       "N=64; HTTP p99 at N=8 <= 100 ms; zero failed or lost turns (the only one asserted)")
    record.note(TABLE, "CPU a turn: the server's CPU clock (every thread) or this process's process_time() over "
                       "the load, divided by its turns; each session's create and history read (1.5 requests a "
                       "turn in all) are included on both sides. Event-loop thread: the server's main thread "
                       "(uvicorn, ASGI, FastAPI, JSON, building each reply). Client CPU: the load client processes, "
                       "which share the box's cores with the server. turns: HTTP / in-process")

    for side, res in (("in-process", engine), ("HTTP", web)):
        for n in CONCURRENCY:
            r = res[n]
            expected = sum(len(s) for s in plan[n]) * SESSION_TURNS
            why = "" if side == "in-process" else f" (server exit code {exit_code}; its log ends: {log_tail})"
            assert not r["failures"], f"{side} N={n}: {r['failures'][:5]}{why}"
            assert len(r["latencies"]) == expected, f"{side} N={n}: {len(r['latencies'])} of {expected} turns sent{why}"
            assert r["kept"] == expected, f"{side} N={n}: {r['kept']} of {expected} turns in the sessions' histories{why}"
