"""Joining a Ray cluster (Ray is the optional extra ``ivcr_engine[ray]``; nothing else imports it)."""
from __future__ import annotations

import os


def connect(address: str | None = "auto"):
    """The ``ray`` module, connected: to the cluster this process already joined, else to
    ``address`` ("auto": the cluster started on this machine with ``ray start``; "local": a new
    one-node cluster inside this process; "HOST:PORT": a head node). No dashboard, no usage stats.
    Clusters started with `ray start` use token authentication: the token comes from
    ~/.ray/auth_token (or RAY_AUTH_TOKEN) and RAY_AUTH_MODE=token must be set for the driver too."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise RuntimeError("Ray is not installed; install the extra: pip install 'ivcr_engine[ray]'") from None
    if ray.is_initialized():
        return ray
    if not isinstance(address, str) or not address:
        raise ValueError(f"a Ray address is 'auto', 'local' or HOST:PORT, got {address!r}")
    kw = {"include_dashboard": False, "log_to_driver": False} if address == "local" else {"log_to_driver": False}
    host = address.rsplit(":", 1)[0]
    if host.startswith("127."):  # a cluster on loopback: this driver joins it on loopback too
        kw["_node_ip_address"] = "127.0.0.1"
    try:
        ray.init(address=None if address == "local" else address, **kw)
    except ConnectionError as exc:
        raise RuntimeError(f"cannot reach a Ray cluster at {address!r}: {exc}") from None
    return ray


def start_local(num_cpus: int):
    """A new one-node cluster inside this process, on 127.0.0.1 (tests, benchmarks, one machine);
    stop it with ``ray.shutdown()``."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    return ray
