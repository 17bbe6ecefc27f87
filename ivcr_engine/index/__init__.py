"""Index store (SQLite metadata + memory-mapped per-channel vectors), ingest and one-shot search."""
from .ingest import Ingestor, IngestReport, collect_videos, index_videos
from .protocol import Evidence, Moment, VideoIndex, VideoInfo
from .searcher import Hit, Index, hits_to_json, to_qvhighlights, to_tvr
from .store import ChannelSpec, IndexStore, VideoRecord

__all__ = ["ChannelSpec", "Evidence", "Hit", "Index", "IndexStore", "Ingestor", "IngestReport", "Moment", "VideoIndex",
           "VideoInfo", "VideoRecord", "collect_videos", "hits_to_json", "index_videos", "to_qvhighlights", "to_tvr"]
