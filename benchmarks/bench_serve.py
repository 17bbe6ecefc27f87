"""Load on `ivcr serve` over loopback: N concurrent scripted sessions (N = 1, 8, 64) against the
synthetic 100k-video / 1M-clip index made of real encoder outputs (synthetic_index.py), with micro-batching on and off in the
same run (two server processes, one after the other). Turns per second and p50 / p99 per turn as
the client sees them (HTTP included); every turn must succeed and be in its session's history.
Target: at N=64, batching on >= 3x the turns/s of batching off, with p99 < 250 ms.

Bounded: each (mode, N) run sends a fixed number of turns and has a time limit.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from synthetic_index import open_index

httpx = pytest.importorskip("httpx")
from tests.server.served import Served  # noqa: E402  (the same real-subprocess helper the tests use)

TABLE = "ivcr serve under load (100k videos / 1M clips, loopback HTTP)"
ENGINE_TABLE = "SessionManager under load, no HTTP (100k videos / 1M clips)"
CONCURRENCY = (1, 8, 64)
SESSION_TURNS = 4     # find, pick, when, not this one
MIN_TURNS = 64        # per (mode, N): small N repeat their script in new sessions
RUN_LIMIT_S = 600
CLIENT_PROCS = 4


@pytest.fixture(scope="module")
def sentences(shared_data):
    data = json.loads((shared_data / "annotations" / "activitynet_captions" / "val.json").read_text())
    return [[x.strip().rstrip(".").lower() for x in item["sentences"][:2]]
            for item in list(data.values())[:200] if len(item["sentences"]) >= 2]


def script(pair) -> list[str]:
    return [f"find videos where {pair[0]}", "the second one", f"when does {pair[1]}", "not this one"]


async def one_session(client, url, pair, latencies, failures):
    sid = (await client.post(f"{url}/v1/sessions")).json()["session_id"]
    for text in script(pair):
        t0 = time.perf_counter()
        r = await client.post(f"{url}/v1/sessions/{sid}/turns", json={"text": text})
        latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            failures.append(f"{r.status_code}: {r.text[:200]}")
    hist = (await client.get(f"{url}/v1/sessions/{sid}")).json()["history"]
    if len(hist) != SESSION_TURNS:
        failures.append(f"session {sid} kept {len(hist)} of {SESSION_TURNS} turns")


async def load(url, n, sentences):
    rounds = max(1, MIN_TURNS // (n * SESSION_TURNS))
    latencies, failures = [], []
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        for r in range(rounds):  # N clients at a time, each running one scripted session
            pairs = [sentences[(r * n + i) % len(sentences)] for i in range(n)]
            await asyncio.gather(*(one_session(client, url, p, latencies, failures) for p in pairs))
        wall = time.perf_counter() - t0
    return latencies, failures, wall


def _client(url, n, sentences):
    return asyncio.run(load(url, n, sentences))


def load_from_processes(pool, url, n, sentences):
    """N sessions from up to CLIENT_PROCS client processes: one asyncio httpx client saturates a
    core at N=64 and would measure itself, not the server."""
    procs = min(CLIENT_PROCS, n)
    t0 = time.perf_counter()
    parts = list(pool.map(_client, [url] * procs, [n // procs] * procs,
                          [sentences[i * n:] + sentences[:i * n] for i in range(procs)], timeout=RUN_LIMIT_S))
    wall = time.perf_counter() - t0
    return [x for p in parts for x in p[0]], [x for p in parts for x in p[1]], wall


@pytest.mark.parametrize("mode", ["off", "on"])
def test_serve_load(mode, sentences, record, tmp_path, shared_data):
    root = open_index("encoder", shared_data)
    server = Served(root, tmp_path / "sessions.sqlite", tmp_path / "serve.log", *(["--no-batching"] if mode == "off" else []),
                    wait_s=900)  # the first start on a new index builds its int8 first-stage cache
    try:
        log = server.log.read_text()
        if mode == "on" and "micro-batching on" not in log:
            pytest.fail("micro-batching is not available on this index (the server said: "
                        + next((l for l in log.splitlines() if "micro-batching" in l), "nothing") + ")")
        # warm: the first turns build the int8 first-stage caches and fault the rows in
        asyncio.run(load(server.url, 4, sentences[-10:]))
        with ProcessPoolExecutor(CLIENT_PROCS, mp_context=multiprocessing.get_context("fork")) as pool:
            results = {n: load_from_processes(pool, server.url, n, sentences) for n in CONCURRENCY}
        for n, (lat, failures, wall) in results.items():
            assert not failures, failures[:5]
            ms = np.array(lat) * 1000
            row = f"N={n:>2}"
            record.put(TABLE, row, f"turns/s batching {mode}", len(lat) / wall)
            record.put(TABLE, row, f"p50 ms {mode}", float(np.percentile(ms, 50)))
            record.put(TABLE, row, f"p99 ms {mode}", float(np.percentile(ms, 99)))
            record.put(TABLE, row, f"turns {mode}", len(lat))
    finally:
        server.stop()
    record.note(TABLE, "target at N=64: turns/s with batching >= 3x without, p99 < 250 ms; zero failed or lost turns")


@pytest.mark.parametrize("mode", ["off", "on"])
def test_engine_load(mode, sentences, record, shared_data):
    """The same scripted sessions on SessionManager threads in this process: the engine's share
    of a turn without HTTP, JSON or a client competing for the two cores."""
    from ivcr_engine.dialogue import Engine
    from ivcr_engine.dialogue.sessions import SessionManager
    from ivcr_engine.index.batching import BatchingIndex

    engine = Engine.open(open_index("encoder", shared_data), prefault=True)  # as `ivcr serve` opens it
    engine.index.search("warm up", k=1)
    if mode == "on":
        engine.index = BatchingIndex(engine.index)
    manager = SessionManager(engine)

    def session(pair, latencies):
        sid = manager.create()
        for text in script(pair):
            t0 = time.perf_counter()
            manager.ask(sid, text)
            latencies.append(time.perf_counter() - t0)
        assert len(manager.state(sid).turns) == SESSION_TURNS

    for n in CONCURRENCY:
        latencies: list[float] = []
        rounds = max(1, MIN_TURNS // (n * SESSION_TURNS))
        t0 = time.perf_counter()
        for r in range(rounds):
            threads = [threading.Thread(target=session, args=(sentences[(r * n + i) % len(sentences)], latencies))
                       for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(RUN_LIMIT_S)
        wall = time.perf_counter() - t0
        assert len(latencies) == rounds * n * SESSION_TURNS
        ms = np.array(latencies) * 1000
        row = f"N={n:>2}"
        record.put(ENGINE_TABLE, row, f"turns/s batching {mode}", len(latencies) / wall)
        record.put(ENGINE_TABLE, row, f"p50 ms {mode}", float(np.percentile(ms, 50)))
        record.put(ENGINE_TABLE, row, f"p99 ms {mode}", float(np.percentile(ms, 99)))
    manager.close()
