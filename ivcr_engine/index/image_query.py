"""A picture as a query: its bytes -> checked RGB pixels -> the visual channel's query row.

Search by picture ranks on the ``visual`` channel, which holds the frame model's features of each
clip's centre frame (video_encoder.py); a query picture goes through the same model, prepared as
ingest prepares a frame: the shorter side scaled to the model's size, the centre cropped square.

Decoding is bounded before any pixel is decoded: the bytes are capped, the format must be JPEG,
PNG or WebP by its signature and by the decoder's own reading, and the header's dimensions are
checked against MAX_SIDE / MAX_PIXELS (a small file can declare a picture of gigapixels). A
truncated or corrupt picture is refused, never decoded partly: every refusal is an
``InvalidArgument`` that says what was wrong.
"""
from __future__ import annotations

import io

import numpy as np

from ..errors import InvalidArgument
from .layout import DEFAULT_WEIGHTS

# a picture's visual channel beside the text channels at their default weights: visual scores are
# raw cosines between frame features (~0.3-0.4 for unrelated frames, ~0.9+ for the same shot), a
# spread like that of the calibrated text scores, so the picture leads and its words re-order
PICTURE_WEIGHTS = {**DEFAULT_WEIGHTS, "visual": 1.0}
MAX_BYTES = 8 * 1024 * 1024
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# the first bytes of each accepted format (checked before the decoder sees the data)
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"))


def sniff(data: bytes) -> str | None:
    """The accepted format these bytes start like, or None."""
    for sig, name in _SIGNATURES:
        if data.startswith(sig):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_image(data: bytes, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Encoded picture bytes -> (H, W, 3) uint8 RGB, upright (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"a picture is given as bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InvalidArgument("the picture is empty")
    if len(data) > max_bytes:
        raise InvalidArgument(f"the picture has {len(data)} bytes; at most {max_bytes}")
    kind = sniff(data)
    if kind is None:
        raise InvalidArgument("not a JPEG, PNG or WebP picture")
    limit = f"at most {MAX_SIDE} pixels a side and {MAX_PIXELS // 1_000_000} megapixels"
    try:
        img = Image.open(io.BytesIO(data), formats=[kind])  # reads the header only
    except Image.DecompressionBombError:  # Pillow's own guard, far above ours, on the header's size
        raise InvalidArgument(f"the picture declares billions of pixels; {limit}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidArgument(f"not a readable {kind} picture: {exc}") from None
    w, h = img.size
    if w < 1 or h < 1 or w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise InvalidArgument(f"the picture is {w}x{h}; {limit}")
    try:
        img.load()  # a truncated file raises here (Pillow's default: LOAD_TRUNCATED_IMAGES off)
        img = ImageOps.exif_transpose(img)
        rgb = img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgument(f"the {kind} picture is truncated or corrupt: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def cover_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): the shorter side scaled to ``size``, the centre cropped
    (what ingest's decoder does to a frame: decode_frames(crop=True))."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
    img = Image.fromarray(rgb).resize((sw, sh), Image.BILINEAR, reducing_gap=3.0)
    x, y = (sw - size) // 2, (sh - size) // 2
    return np.asarray(img.crop((x, y, x + size, y + size)), dtype=np.uint8)


def image_rows(frame_encoder, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The query rows of one picture: {"visual": (1, d)} unit features, on the scale the index's
    clip rows and ``moment_vector`` use."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidArgument(f"a picture's pixels are (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    square = cover_crop(rgb, frame_encoder.image_size)
    feats, _ = frame_encoder.encode(frame_encoder.normalize(square[None]))
    return {"visual": np.ascontiguousarray(feats[:1], dtype=np.float32)}


def search_by(index, text: str = "", picture=None, k: int = 10, allow=None, deny=None) -> list:
    """``index.search`` by text, by a picture, or by both (any ``VideoIndex`` with ``search``:
    the one-shot search of the server, the CLI and Python callers)."""
    if picture is None:
        if not text.strip():
            raise InvalidArgument("a search needs a query, a picture, or both")
        return index.search(text, k=k, allow=allow, deny=deny)
    rows, weights = picture_query(index, text, picture)
    return index.search(rows, k=k, weights=weights, allow=allow, deny=deny)


def picture_query(index, text: str, picture) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The query rows and weights of a search by ``picture`` and, when not empty, ``text``: the
    picture's visual row beside the text's rows (any ``VideoIndex``)."""
    rows = dict(index.encode_queries([text])) if text and text.strip() else {}
    rows["visual"] = index.encode_image(picture)["visual"]
    return rows, PICTURE_WEIGHTS
