"""Which shard a video belongs to: a stable hash of its content hash, the same on every machine and
every run, so a re-run finds a video in the shard it was written to."""
from __future__ import annotations

import hashlib
from typing import Sequence


def shard_of(content_hash: str, n: int) -> int:
    h = hashlib.blake2b(content_hash.encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % n


def store_for(stores: Sequence, digest: str):
    """The store (shard) a video with this content hash is written to."""
    return stores[shard_of(digest, len(stores))] if len(stores) > 1 else stores[0]
