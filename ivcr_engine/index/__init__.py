"""Index store (SQLite metadata + memory-mapped per-channel vectors)."""
from .store import ChannelSpec, IndexStore, VideoRecord

__all__ = ["ChannelSpec", "IndexStore", "VideoRecord"]
