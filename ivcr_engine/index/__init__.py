"""The index: one module per concept, in the order a turn's data flows through them.

- layout.py: the channels and their default weights; store.py / manifest.py: the on-disk form
  (one folder's SQLite + row files; a sharded index's manifest); ingest.py (+ video_encoder.py,
  onscreen.py, ray_ingest.py, rebuild_text.py): the writers; check.py: verify and repair.
- query_encoder.py: query text -> channel rows, and the engine's one cache of query vectors.
- mapped.py: a committed snapshot mapped for reading; ranking.py (+ first_stage.py,
  inverted_lists.py): staged video ranking; moments.py (+ moment_edges.py): moments with evidence;
  results.py: hits and their exported formats.
- protocol.py: the index protocol the dialogue and the server use; single.py (``Index``),
  sharded.py (``ShardedIndex``) and batching.py (``BatchingIndex``) implement it.
"""
from .ingest import Ingestor, IngestReport, index_videos
from .inputs import collect_videos
from .protocol import Evidence, Moment, MomentMatch, VideoIndex, VideoInfo
from .results import Hit, hits_to_json, to_qvhighlights, to_tvr
from .single import Index
from .store import ChannelSpec, IndexStore, VideoRecord

__all__ = ["ChannelSpec", "Evidence", "Hit", "Index", "IndexStore", "Ingestor", "IngestReport", "Moment", "MomentMatch",
           "VideoIndex", "VideoInfo", "VideoRecord", "collect_videos", "hits_to_json", "index_videos", "to_qvhighlights",
           "to_tvr"]
