"""The slower Ray test: a two-node cluster on 127.0.0.1 (`ray start --head` plus a second
`ray start --address` worker node process), driven through the CLI: `ivcr index --shards 2 --ray`
whose driver is killed (SIGKILL) after its first commit, a re-run that resumes, and `ivcr search
--ray` over the shards on the cluster's actors."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (make test installs it)")

RAY = str(Path(sys.executable).with_name("ray"))
VIDEOS = ["cockatoo.mp4", "bikes.mp4", "nasa_13013.mp4", "dog_walk.mp4"]
# `ray start` clusters use token authentication (token in ~/.ray/auth_token, made on first start)
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive_nodes(address: str) -> int:
    code = (f"import ray; ray.init(address={address!r}, _node_ip_address='127.0.0.1', log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


def wait_for_nodes(address: str, n: int, log: Path) -> None:
    for _ in range(60):  # bounded: about a minute
        if alive_nodes(address) >= n:
            return
        time.sleep(1)
    pytest.fail(f"the Ray cluster did not reach {n} nodes: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """`ray start --block` stops the node's processes when it gets SIGTERM."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def two_nodes(request, tmp_path_factory):
    port = free_port()
    # Ray rewrites a bootstrap address of exactly 127.0.0.1 into the host's own network address;
    # 127.0.0.2 (loopback too) is kept, and every node and driver runs on 127.0.0.1.
    address = f"127.0.0.2:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    logs = tmp_path_factory.mktemp("ray_logs")
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                            stdout=open(logs / "head.log", "w"), stderr=subprocess.STDOUT, env=ENV)
    request.addfinalizer(lambda: stop(head))
    wait_for_nodes(address, 1, logs / "head.log")
    worker = subprocess.Popen([RAY, "start", f"--address={address}", *common],
                              stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT, env=ENV)
    request.addfinalizer(lambda: stop(worker))  # finalizers run last-in first-out: the worker stops first
    wait_for_nodes(address, 2, logs / "worker.log")
    return address


def committed(root: Path) -> list[str]:
    out = []
    for shard in sorted(root.glob("shard-*")):
        db = shard / "meta.sqlite"
        if db.exists():
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                try:
                    out += [r[0] for r in con.execute("SELECT path FROM videos")]
                except sqlite3.OperationalError:  # the schema is being created
                    pass
    return out


def test_cli_ingest_survives_a_killed_driver_and_searches_on_two_nodes(two_nodes, shared_data, tmp_path):
    ivcr = [sys.executable, "-m", "ivcr_engine"]
    videos = [str(shared_data / "videos" / n) for n in VIDEOS]
    root = tmp_path / "sharded"
    cmd = ivcr + ["index", *videos, "--index", str(root), "--shards", "2", "--ray", two_nodes, "--workers", "2",
                  "--no-speech", "--quiet"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for _ in range(600):  # up to 5 minutes for the first commit
        if committed(root) or driver.poll() is not None:
            break
        time.sleep(0.5)
    driver.kill()  # SIGKILL: the driver is the one writer; whatever it committed must stay
    driver.wait(timeout=60)
    before = committed(root)
    assert before, "nothing was committed before the kill"
    again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert again.returncode == 0, again.stderr
    after = committed(root)
    assert sorted(after) == sorted(str(Path(v).resolve()) for v in videos)  # each video once, nothing lost
    assert f"skipped (already indexed) {len(before)}" in again.stdout
    local = subprocess.run(ivcr + ["search", "--index", str(root), "a parrot", "-k", "3"],
                           capture_output=True, text=True, env=ENV)
    on_ray = subprocess.run(ivcr + ["search", "--index", str(root), "--ray", two_nodes, "a parrot", "-k", "3"],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert on_ray.returncode == 0, on_ray.stderr
    assert on_ray.stdout == local.stdout and "cockatoo.mp4" in on_ray.stdout
