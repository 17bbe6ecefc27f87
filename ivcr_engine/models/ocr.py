"""On-screen text reader on ONNX Runtime: PP-OCRv4 text detection (DB) and recognition (CTC),
Chinese and English, with the models taken from the `rapidocr-onnxruntime` wheel at set-up
(models/prepare_ocr_model.py). Pre- and post-processing are our own, in NumPy/SciPy, so the run
time needs neither OpenCV nor rapidocr's code:

    frames (N, H, W, 3) uint8 RGB, H and W multiples of 32
      -> detector, one batched run: per-pixel text probability
      -> DB boxes: threshold 0.3, 2x2 dilation, connected components, mean probability >= 0.5,
         the box grown by area * 1.6 / perimeter (DB's "unclip")
      -> crops resized to height 48, batched by aspect ratio -> recogniser -> CTC greedy decode
      -> lines (text, score, box) with score >= 0.5, in reading order, with the spaces the
         recogniser dropped between English words put back (respace_latin)

Boxes are axis-aligned (bounding rectangles of the detector's components): captions, slides,
signs facing the camera and tickers are horizontal. rapidocr fits rotated rectangles
(cv2.minAreaRect); on horizontal text both give the same crops (tests/models/test_ocr.py checks
our lines against rapidocr's pipeline), and rotated text is read worse here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .registry import ModelCard, model_dir
from .text import _session

DET_THRESH = 0.3      # probability a pixel must exceed to count as text (PP-OCR's default)
BOX_THRESH = 0.5      # mean probability a box must reach
UNCLIP_RATIO = 1.6    # DB shrinks text regions in training; grow them back by area * r / perimeter
MIN_SIDE = 3          # components thinner than this (pixels) are noise
TEXT_SCORE = 0.5      # recogniser confidence (mean of the chosen characters' probabilities) kept
REC_HEIGHT = 48       # the recogniser's input height
REC_MIN_WIDTH = 320   # ... and its narrowest batch width (PP-OCR pads to at least 320)
REC_BATCH = 16        # crops per recogniser run at most


_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z0-9']{7,}")


def respace_latin(text: str) -> str:
    """Put back the spaces the recogniser dropped between English words: PP-OCRv4's (Chinese and
    English) model often reads "Quarterly revenue grew" as "Quarterlyrevenuegrew" (rapidocr's own
    pipeline too), which the text encoder cannot match. Runs of 8+ Latin letters are split by
    wordninja (English Wikipedia unigram frequencies) where that keeps every character; a known
    long word stays whole because one frequent word beats several."""
    import wordninja

    def split(m: re.Match) -> str:
        run = m.group(0)
        words = wordninja.split(run)
        return " ".join(words) if len(words) > 1 and "".join(words) == run else run

    return _LATIN_RUN.sub(split, text)


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the frame's pixels (x1, y1 exclusive)


def _dilate2x2(mask: np.ndarray) -> np.ndarray:
    """cv2.dilate with a 2x2 kernel (anchor at its centre, (1, 1)): a pixel is set when it or its
    left, upper or upper-left neighbour is."""
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:, 1:] |= mask[:, :-1]
    out[1:, 1:] |= mask[:-1, :-1]
    return out


def db_boxes(prob: np.ndarray) -> list[tuple[int, int, int, int, float]]:
    """Text boxes from one detector probability map (H, W): (x0, y0, x1, y1, score), exclusive
    ends, in the map's pixels."""
    from scipy import ndimage

    h, w = prob.shape
    mask = _dilate2x2(prob > DET_THRESH)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))  # 8-connected, as contours are
    out = []
    for sl in ndimage.find_objects(labels)[:1000]:
        ys, xs = sl
        # the component's extent between its outermost pixel centres (what minAreaRect measures)
        bw, bh = xs.stop - 1 - xs.start, ys.stop - 1 - ys.start
        if min(bw, bh) < MIN_SIDE:
            continue
        score = float(prob[sl].mean())  # mean probability over the box (DB's "fast" score)
        if score < BOX_THRESH:
            continue
        d = bw * bh * UNCLIP_RATIO / (2.0 * (bw + bh))
        if min(bw, bh) + 2 * d < MIN_SIDE + 2:
            continue
        x0 = int(np.clip(round(xs.start - d), 0, w - 1))
        x1 = int(np.clip(round(xs.stop - 1 + d), 0, w - 1))
        y0 = int(np.clip(round(ys.start - d), 0, h - 1))
        y1 = int(np.clip(round(ys.stop - 1 + d), 0, h - 1))
        if x1 - x0 <= 3 or y1 - y0 <= 3:
            continue
        out.append((x0, y0, x1, y1, score))
    return reading_order(out)


def reading_order(boxes: list) -> list:
    """Top to bottom, and left to right within a line (boxes whose tops are within 10 px), as
    PP-OCR orders them."""
    boxes = sorted(boxes, key=lambda b: (b[1], b[0]))
    for i in range(len(boxes) - 1):
        for j in range(i, -1, -1):
            if abs(boxes[j + 1][1] - boxes[j][1]) < 10 and boxes[j + 1][0] < boxes[j][0]:
                boxes[j], boxes[j + 1] = boxes[j + 1], boxes[j]
            else:
                break
    return boxes


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(C, H, W) float32 -> (C, out_h, out_w), bilinear with half-pixel centres (cv2.INTER_LINEAR)."""
    c, h, w = img.shape

    def axis(n_in: int, n_out: int):
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h, out_h)
    x0, x1, fx = axis(w, out_w)
    rows = img[:, y0, :] * (1 - fy)[None, :, None] + img[:, y1, :] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


class TextReader:
    """``read(frames) -> [[TextLine, ...] per frame]``: the text PP-OCRv4 finds in each frame."""

    def __init__(self, name: str = "ocr_ppocr_v4", root: Path | None = None, threads: int | None = None,
                 respace: bool = True):
        self.card = ModelCard.load((root or model_dir()) / name)
        self.respace = respace  # lines get respace_latin (False: the recogniser's raw text)
        # TensorRT would build an engine for every new input shape (every batch of crops has its
        # own width), so the OCR graphs run on CUDA or the CPU.
        self._det = _session(self.card.path / "det.onnx", threads, tensorrt=False)
        self._rec = _session(self.card.path / "rec.onnx", threads, tensorrt=False)
        chars = (self.card.path / "characters.txt").read_text(encoding="utf-8").split("\n")
        # CTC class 0 is the blank; the dictionary follows, then the space (PP-OCR's use_space_char)
        self.characters = ["", *chars, " "]
        self.providers = self._det.get_providers()

    def _detect_input(self, frames_rgb: np.ndarray) -> np.ndarray:
        x = np.asarray(frames_rgb)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
            raise ValueError(f"expected uint8 RGB frames (N, H, W, 3), got {x.dtype} {x.shape}")
        if x.shape[1] % 32 or x.shape[2] % 32:
            raise ValueError(f"frame sides must be multiples of 32 for the text detector, got {x.shape[1]}x{x.shape[2]}")
        # RGB -> BGR (the models were trained on OpenCV's channel order), NHWC -> NCHW, scaled
        return np.ascontiguousarray(x[..., ::-1].transpose(0, 3, 1, 2), np.float32) * (2 / 255.0) - 1.0

    def _detect(self, norm: np.ndarray, batch_size: int = 8) -> list[list[tuple]]:
        boxes = []
        for s in range(0, len(norm), batch_size):
            (prob,) = self._det.run(None, {"x": norm[s:s + batch_size]})
            boxes += [db_boxes(p[0]) for p in prob]
        return boxes

    def detect(self, frames_rgb: np.ndarray) -> list[list[tuple]]:
        """Text boxes (x0, y0, x1, y1, score) of each uint8 RGB frame (N, H, W, 3) whose sides are
        multiples of 32 (the detector's stride), in reading order."""
        return self._detect(self._detect_input(frames_rgb))

    def recognize(self, crops: Sequence[np.ndarray], batch_size: int = REC_BATCH) -> list[tuple[str, float]]:
        """(text, score) for each normalised BGR crop (3, h, w)."""
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        ratios = [c.shape[2] / c.shape[1] for c in crops]
        order = [int(i) for i in np.argsort(ratios, kind="stable")]
        batches, start = [], 0
        # Every crop of a batch is padded to the widest one, and the recogniser's cost is linear
        # in the padded width (one wide caption in a batch of short labels made a batch cost 4x
        # its crops read one by one). So a batch holds crops of similar widths only.
        for k in range(1, len(order) + 1):
            if k == len(order) or k - start == batch_size or \
                    _rec_width(ratios[order[k]]) > 1.25 * _rec_width(ratios[order[start]]):
                batches.append(order[start:k])
                start = k
        for idx in batches:
            width = max(_rec_width(ratios[i]) for i in idx)
            batch = np.zeros((len(idx), 3, REC_HEIGHT, width), np.float32)  # 0 = mid-grey padding
            for j, i in enumerate(idx):
                w = min(width, int(np.ceil(REC_HEIGHT * ratios[i])))
                batch[j, :, :, :w] = resize_bilinear(crops[i], REC_HEIGHT, w)
            (probs,) = self._rec.run(None, {"x": batch})
            for j, i in enumerate(idx):
                out[i] = self._ctc_decode(probs[j])
        return out

    def _ctc_decode(self, probs: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: the best class per step, repeats merged, blanks dropped; the score is the
        mean probability of the characters kept."""
        best = probs.argmax(axis=1)
        keep = np.ones(len(best), bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        if not keep.any():
            return "", 0.0
        text = "".join(self.characters[i] for i in best[keep])
        return text, float(probs.max(axis=1)[keep].mean())

    def read(self, frames_rgb: np.ndarray) -> list[list[TextLine]]:
        """The text lines of each frame (uint8 RGB, sides multiples of 32), in reading order.
        Frames where the detector finds nothing cost no recognition."""
        return next(self.read_sequence([frames_rgb]))

    def read_sequence(self, chunks: Iterable[np.ndarray]) -> Iterator[list[list[TextLine]]]:
        """``read`` over the frames of one video in time order, given in chunks (of one size);
        yields each chunk's lines. Text on screen usually stays for seconds, so work is reused
        from the frame before: a frame with no changed pixel tile takes that frame's lines
        without detection, and a box at the same place as one before (IoU >= 0.9) whose pixels
        did not change takes its text without recognition."""
        prev_frame, prev_boxes, known = None, [], {}  # known: box key -> (text, score)
        next_key = 0
        for chunk in chunks:
            norm = self._detect_input(chunk)
            n = len(norm)
            if n == 0:
                yield []
                continue
            same = [_unchanged(norm[f], norm[f - 1] if f else prev_frame) for f in range(n)]
            detect = [f for f in range(n) if not same[f]]
            found = dict(zip(detect, self._detect(norm[detect]))) if detect else {}
            crops, keys, frame_boxes = [], [], []
            for f in range(n):
                before, before_boxes = (norm[f - 1], frame_boxes[f - 1]) if f else (prev_frame, prev_boxes)
                if same[f]:
                    frame_boxes.append(before_boxes)
                    continue
                boxes = []
                for x0, y0, x1, y1, _ in found[f]:
                    box = (x0, y0, x1, y1)
                    key = next((k for b, k in before_boxes if _iou(b, box) >= 0.9
                                and _unchanged(norm[f, :, y0:y1, x0:x1], before[:, y0:y1, x0:x1])), None)
                    if key is None:
                        key, next_key = next_key, next_key + 1
                        crop = norm[f, :, y0:y1, x0:x1]
                        if crop.shape[1] >= 1.5 * crop.shape[2]:  # a tall box: vertical text, read turned
                            crop = np.rot90(crop, 1, axes=(1, 2))
                        crops.append(np.ascontiguousarray(crop))
                        keys.append(key)
                    boxes.append((box, key))
                frame_boxes.append(boxes)
            known.update(zip(keys, self.recognize(crops) if crops else []))
            out = []
            for boxes in frame_boxes:
                lines = []
                for box, key in boxes:
                    text, score = known[key]
                    if score >= TEXT_SCORE and text.strip():
                        lines.append(TextLine(respace_latin(text.strip()) if self.respace else text.strip(), score, box))
                out.append(lines)
            prev_frame, prev_boxes = norm[-1].copy(), frame_boxes[-1]
            known = {k: known[k] for _, k in prev_boxes}  # only the last frame's boxes can be reused
            yield out


def _rec_width(ratio: float) -> int:
    """The recogniser's input width for a crop of this width / height: its height times the
    ratio, at least REC_MIN_WIDTH (PP-OCR's padding)."""
    return int(REC_HEIGHT * max(REC_MIN_WIDTH / REC_HEIGHT, ratio))


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


CHANGED_LEVEL = 0.25   # a pixel changed when a channel moved by more than this (normalised, ~32/255)
CHANGED_PIXELS = 5     # ... and a 16x16 tile changed when more than this many of its pixels did


def _unchanged(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two normalised (3, H, W) images show the same thing: no 16x16 tile has more than a
    few strongly changed pixels. Tiles, not a whole-image average, so that one changed digit
    of a clock or a ticker counts as a change; compression noise stays far below the level."""
    if a is None or b is None or a.shape != b.shape:
        return False
    changed = (np.abs(a - b) > CHANGED_LEVEL).any(axis=0)
    h, w = changed.shape
    th, tw = -(-h // 16), -(-w // 16)
    padded = np.zeros((th * 16, tw * 16), np.int32)
    padded[:h, :w] = changed
    return bool(padded.reshape(th, 16, tw, 16).sum(axis=(1, 3)).max() <= CHANGED_PIXELS)
