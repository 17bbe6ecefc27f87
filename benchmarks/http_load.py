"""A minimal HTTP/1.1 keep-alive load client for bench_serve.py: raw asyncio streams (uvloop where
installed), one connection per simulated client, Content-Length bodies, JSON through ``json``.

It does as little as a client can (no header objects, no URL parsing, no per-request timers
beyond the latency clock) because it shares the box's cores with the server it measures: a
general-purpose client (httpx) spent more CPU per request than the server's own HTTP layer.

Not a general client: it speaks to one host, expects ``Content-Length`` or chunked bodies, and
treats anything unexpected (a dropped connection, a malformed head) as that session's failure.
"""
from __future__ import annotations

import asyncio
import json
import time

SESSION_TURNS = 4  # find, pick, when, not this one


def script(pair) -> list[str]:
    return [f"find videos where {pair[0]}", "the second one", f"when does {pair[1]}", "not this one"]


class Connection:
    """One keep-alive connection; ``request`` -> (status, body bytes). Reconnects once the server
    said ``Connection: close`` (it never should here, and a reconnect is counted)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._host_line = f"Host: {host}:{port}\r\n".encode()
        self.reader = self.writer = None
        self.connects = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.connects += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\n".encode() + self._host_line
                + (b"Content-Type: application/json\r\n" if body is not None else b"")
                + b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n")
        self.writer.write(head + data)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 "):
            raise ConnectionError(f"not an HTTP/1.1 response: {lines[0][:80]!r}")
        status = int(lines[0][9:12])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self._trailer()
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            payload = b"".join(parts)
        elif length is not None:
            payload = await self.reader.readexactly(length) if length else b""
        else:  # no length: the body runs to the connection's end
            payload = await self.reader.read()
            close = True
        if close:
            self.close()
        return status, payload

    async def _trailer(self) -> None:
        while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
            pass


async def one_session(conn: Connection, pair, latencies: list, failures: list) -> int:
    """One scripted session on ``conn``; returns how many turns its stored history kept."""
    status, raw = await conn.request("POST", "/v1/sessions")
    if status != 201:
        failures.append(f"create: {status}: {raw[:200]!r}")
        return 0
    sid = json.loads(raw)["session_id"]
    path = f"/v1/sessions/{sid}/turns"
    for text in script(pair):
        t0 = time.perf_counter()
        status, raw = await conn.request("POST", path, {"text": text})
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            failures.append(f"turn {text!r}: {status}: {raw[:200]!r}")
    status, raw = await conn.request("GET", f"/v1/sessions/{sid}")
    if status != 200:
        failures.append(f"history of {sid}: {status}: {raw[:200]!r}")
        return 0
    kept = len(json.loads(raw)["history"])
    if kept != SESSION_TURNS:
        failures.append(f"session {sid} kept {kept} of {SESSION_TURNS} turns")
    return kept


async def run_slots(host: str, port: int, slots: list[list], limit_s: float) -> dict:
    """Each slot is one simulated client on its own keep-alive connection, running its sessions
    (a list of sentence pairs) one after the other; all slots at once."""
    latencies: list[float] = []
    failures: list[str] = []
    kept = 0
    conns = [Connection(host, port) for _ in slots]

    async def slot(conn, pairs):
        nonlocal kept
        for pair in pairs:
            try:
                n = await one_session(conn, pair, latencies, failures)
                kept += n  # not `kept += await ...`: that reads kept before the await
            except Exception as exc:  # noqa: BLE001  a dropped connection or a malformed reply: this session failed
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
                conn.close()

    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(slot(c, p) for c, p in zip(conns, slots))), limit_s)
    except asyncio.TimeoutError:
        failures.append(f"time limit ({limit_s:.0f} s) reached")
    t1, cpu1 = time.perf_counter(), time.process_time()
    for c in conns:
        c.close()
    return {"latencies": latencies, "failures": failures, "kept": kept, "start": t0, "end": t1,
            "client_cpu_s": cpu1 - cpu0, "connects": sum(c.connects for c in conns)}


def client_process(host: str, port: int, slots: list[list], limit_s: float) -> dict:
    """Entry point of one client process (ProcessPoolExecutor): its slots on one event loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_slots(host, port, slots, limit_s))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_slots(host, port, slots, limit_s))


def warm_process(_=None) -> int:
    """A no-op for the pool's workers to start on (forked before the engine is opened)."""
    import os

    return os.getpid()
