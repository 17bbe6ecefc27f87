"""Million-clip indexes for latency benchmarks, built once into .cache/bench/.

Two corpora with the real channel layout (visual 1280-d, concept 384-d, speech and subtitle
385-d with the presence dimension; float16), 100k videos x 10 clips of 2 s:

- ``gaussian``: independent random unit rows. The worst case for any compression of the rows (no
  direction matters more than another), and a corpus no encoder produces.
- ``encoder``: rows made from real encoder outputs. Text channels are MiniLM embeddings of real
  sentences (``encoder-e5``: the same corpus embedded by multilingual-e5-small, the default text
  model, so turns pay its query encoder) (TVR, Charades-STA, DiDeMo and QVHighlights annotations; the benchmarks' queries come
  from ActivityNet Captions, so no query is in the corpus); visual and concept rows are
  EfficientNet-Lite0 features and concept vectors of the shared videos' frames. Each clip mixes
  two pool vectors and a little noise, and neighbouring clips of a video often share content, so
  the corpus has the anisotropy and the temporal coherence of a real index.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ivcr_engine.index import ChannelSpec, IndexStore, VideoRecord

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench"
N_VIDEOS, CLIPS = 100_000, 10
DIMS = {"visual": 1280, "concept": 384, "speech": 385, "subtitle": 385}
PER_BATCH = 5_000  # videos per store commit
CORPUS_VERSION = 3  # of the encoder corpora: noise scaled by each pool's spread, rows keep the pool's norms (_mix)
LINES_VERSION = 1  # the encoder corpora's timed lines (_ensure_lines)
# encoder corpora and the text model their text and concept rows are embedded with
ENCODER_CORPORA = {"encoder": "text_minilm_l6", "encoder-e5": "text_me5_small"}


def open_index(kind: str, shared_data: Path | None = None) -> Path:
    """The folder of the ``kind`` ("gaussian" or "encoder") 1M-clip index, built when missing."""
    root = CACHE / ("latency_index" if kind == "gaussian" else f"latency_index_{kind}")
    if (root / "meta.sqlite").exists():
        store = IndexStore(root)
        current = (store.row_count() == N_VIDEOS * CLIPS
                   and store.settings().get("synthetic_version", 1) == (1 if kind == "gaussian" else CORPUS_VERSION))
        store.close()
        if current:
            if kind in ENCODER_CORPORA:
                _ensure_lines(root, shared_data)
            return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    text_model = ENCODER_CORPORA.get(kind, "text_minilm_l6")
    if kind == "gaussian":
        rows = _gaussian_rows
    elif kind in ENCODER_CORPORA:
        if shared_data is None:
            raise ValueError("the encoder corpus is made from the shared data")
        pools = _encoder_pools(shared_data, text_model)
        rows = lambda rng, n: _encoder_rows(rng, n, pools)  # noqa: E731
    else:
        raise ValueError(f"unknown corpus {kind!r}")
    _build(root, rng, rows, text_model, 1 if kind == "gaussian" else CORPUS_VERSION)
    if kind in ENCODER_CORPORA:
        _ensure_lines(root, shared_data)
    return root


def _ensure_lines(root: Path, shared_data: Path) -> None:
    """A timed speech line for every clip whose speech row says it has speech (about 600k): a
    real annotation sentence drawn at random, so the lexical channel (issue 21) searches a table
    of a real index's size and vocabulary. Written once, in one transaction, then its words."""
    with IndexStore(root) as store:
        if store._meta("synthetic_lines") == str(LINES_VERSION):
            store.merge_lexical()  # as an ingest run leaves it (a corpus cached before runs merged)
            return
        sentences = corpus_sentences(shared_data)
        rows = store.row_count()
        speech = store.vectors("speech")
        has = np.concatenate([np.asarray(speech[a:a + 100_000, -1]) > 0.5 for a in range(0, rows, 100_000)])
        times = np.asarray(store.clip_times())
        owner = np.repeat([v["id"] for v in store.videos(include_removed=True)],
                          [v["n_clips"] for v in store.videos(include_removed=True)])
        pick = np.random.default_rng(5).integers(0, len(sentences), rows)
        store.db.execute("BEGIN IMMEDIATE")
        store.db.execute("DELETE FROM texts")
        store.db.executemany("INSERT INTO texts(video_id, source, t_start, t_end, text) VALUES (?, 'speech', ?, ?, ?)",
                             ((int(owner[r]), float(times[r, 0]), float(times[r, 1]), sentences[pick[r]])
                              for r in np.flatnonzero(has)))
        store.set_meta("synthetic_lines", str(LINES_VERSION))
        store.db.execute("COMMIT")
        store.build_lexical()


def _build(root: Path, rng, rows, text_model: str, version: int) -> None:
    times = np.stack([np.arange(CLIPS) * 2.0, np.arange(CLIPS) * 2.0 + 2.0], 1)
    with IndexStore(root, create=True) as store:
        store.set_settings({"clip_seconds": 2.0, "text_model": text_model, "synthetic_version": version})
        for name, dim in DIMS.items():
            store.ensure_channel(ChannelSpec(name, dim))
        for b in range(N_VIDEOS // PER_BATCH):
            vecs = rows(rng, PER_BATCH * CLIPS)
            recs = [VideoRecord(f"/synthetic/{b}_{i}.mp4", f"syn-{b}-{i}", 20.0, times,
                                {n: vecs[n][i * CLIPS:(i + 1) * CLIPS] for n in DIMS}) for i in range(PER_BATCH)]
            store.add_videos(recs)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _gaussian_rows(rng, n: int) -> dict[str, np.ndarray]:
    return {name: _unit(rng.standard_normal((n, dim), dtype=np.float32)) for name, dim in DIMS.items()}


def corpus_sentences(shared_data: Path) -> list[str]:
    """Real sentences for the corpus's text rows (never the benchmarks' ActivityNet queries)."""
    ann = shared_data / "annotations"
    out = [json.loads(l)["desc"] for l in (ann / "tvr" / "tvr_val_release.jsonl").read_text().splitlines() if l]
    out += [l.split("##", 1)[1] for l in (ann / "charades_sta" / "charades_sta_test.txt").read_text().splitlines() if "##" in l]
    out += [d["description"] for d in json.loads((ann / "didemo" / "val_data.json").read_text())]
    out += [json.loads(l)["query"] for l in (ann / "qvhighlights" / "highlight_val_release.jsonl").read_text().splitlines() if l]
    return sorted({s.strip() for s in out if s.strip()})


def _encoder_pools(shared_data: Path, text_model: str) -> dict[str, np.ndarray]:
    """Real encoder outputs, cached: sentence embeddings and frame features/concepts."""
    path = CACHE / ("encoder_pools.npz" if text_model == "text_minilm_l6" else f"encoder_pools.{text_model}.npz")
    if path.exists():
        return dict(np.load(path))
    from ivcr_engine import decode
    from ivcr_engine.models import FrameEncoder, TextEncoder

    # the index records this text model (_build): its sentences and concepts are in that space
    text = TextEncoder(text_model).encode(corpus_sentences(shared_data), "passage")
    frames = FrameEncoder(text_model=text_model)
    feats, concepts = [], []
    for video in sorted((shared_data / "videos").iterdir()):
        clip = decode.decode_frames(str(video), decode.Fps(6.0), size=(224, 224))
        for pixels in (clip.frames, clip.frames[:, :, ::-1]):  # and mirrored: more distinct frames
            f, probs = frames.encode(frames.normalize(np.ascontiguousarray(pixels)))
            feats.append(f)
            concepts.append(frames.concepts(probs))
    pools = {"text": text, "visual": np.concatenate(feats), "concept": np.concatenate(concepts)}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **pools)
    return pools


def _mix(rng, pool: np.ndarray, n: int, noise: float = 0.15) -> np.ndarray:
    """n rows, each a random blend of two pool rows plus isotropic noise of norm ``noise`` times
    the pool rows' spread (the rms norm of their deviations from the pool's mean: about 2 % of the
    energy of what tells rows apart); clips of the same video (runs of CLIPS rows) repeat their
    predecessor's pair half of the time. Scaled by the spread, not a fixed norm: E5's sentences
    differ by deviations of norm ~0.47 (MiniLM's ~0.93) and its concept vectors by ~0.2, so a
    fixed 0.15 was most of what told two E5 concept rows apart (CORPUS_VERSION 1). A row keeps
    the norm of its blend's two pool rows: E5's concept vectors ("expected" pooling, FrameEncoder)
    have norm ~0.2 in a real index, and made unit (CORPUS_VERSION 2) they outweighed the
    sentences fivefold in the folded text copy, whose projection then kept their directions and
    lost the sentences' (text recall@10 0.13)."""
    spread = float(np.sqrt(np.mean(np.sum((pool - pool.mean(axis=0)) ** 2, axis=1))))
    noise *= spread
    a, b = rng.integers(0, len(pool), n), rng.integers(0, len(pool), n)
    keep = (rng.random(n) < 0.5) & (np.arange(n) % CLIPS != 0)
    for i in np.flatnonzero(keep):  # temporal coherence inside a video
        a[i], b[i] = a[i - 1], b[i - 1]
    t = rng.uniform(0.6, 1.0, (n, 1)).astype(np.float32)
    d = pool.shape[1]
    x = t * pool[a] + (1 - t) * pool[b] + (noise / np.sqrt(d)) * rng.standard_normal((n, d), dtype=np.float32)
    norms = np.linalg.norm(pool, axis=1)
    return (_unit(x.astype(np.float32)) * (t * norms[a, None] + (1 - t) * norms[b, None])).astype(np.float32)


def _encoder_rows(rng, n: int, pools: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {"visual": _mix(rng, pools["visual"], n), "concept": _mix(rng, pools["concept"], n)}
    for name, share in (("speech", 0.6), ("subtitle", 0.3)):  # clips with text; the rest are zero
        has = rng.random(n) < share
        rows = np.zeros((n, DIMS[name]), np.float32)
        rows[has, :-1] = _mix(rng, pools["text"], int(has.sum()))
        rows[has, -1] = 1.0
        out[name] = rows
    return out
