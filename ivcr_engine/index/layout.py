"""The channel layout every index shares: which channels exist, which live in the text encoder's
space, which carry the trailing presence dimension, and the weights a turn fuses them with.

Ingest writes this layout, ranking folds by it and the query encoder shapes queries for it; none
of them owns it, so it lives here, below all three.
"""
from __future__ import annotations

TEXT_CHANNELS = ("concept", "speech", "subtitle", "ocr")  # channels in the text encoder's space
PRESENCE_CHANNELS = ("speech", "subtitle", "ocr")          # ... with a trailing presence dimension
# (1 where a clip has text of that source, else 0: the query's matching entry carries the chance
# baseline, so clips without text are not credited with chance similarity)
TEXT_SOURCES = ("speech", "subtitle", "ocr")              # where timed text lines come from
ALL_CHANNELS = ("visual",) + TEXT_CHANNELS

# The lexical channel (lexical.py) has no vectors: its query "row" is the query's text, (B, 1)
# str, and a video's score is its best line's coverage of the query's words (0..1).
LEXICAL = "lexical"

# LEXICAL's weight: a line holding every word of the query adds 0.3 to its video's fused score,
# about what a paraphrased sentence's speech match reaches. Chosen on bench_moments.py's tuned
# keywords (VR@1 with one chance for all queries, 0 / 0.1 / 0.2 / 0.3: English 78 / 89 / 92 / 94 %,
# Chinese 44 / 58 / 67 / 78 %; paraphrases unchanged) and checked on held-out ones once
# (docs/BENCHMARKS.md, "Hybrid lexical + dense retrieval").
DEFAULT_WEIGHTS = {"concept": 1.0, "speech": 1.0, "subtitle": 1.0, "ocr": 1.0, "clip": 1.0, LEXICAL: 0.3}
# Similarity an unrelated sentence still reaches under MiniLM (on the calibrated scale, see
# TextEncoder.calibrate, for other text models): subtracted from clips that have speech,
# subtitle or on-screen text (through the presence dimension), so only evidence above chance counts.
TEXT_BASELINE = 0.15
