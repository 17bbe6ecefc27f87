"""A picture as clients send it (a data URL or plain base64, in a JSON body or an OpenAI
``image_url`` content part) -> its bytes. What the bytes hold is the engine's to check
(index/image_query.py: format, dimensions, truncation)."""
from __future__ import annotations

import base64
import binascii
import re

from ..errors import InvalidArgument
from ..index.image_query import MAX_BYTES

_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,", re.I)
ACCEPTED = ("image/jpeg", "image/png", "image/webp")


def picture_bytes(text: str) -> bytes:
    """The bytes of a data URL (``data:image/png;base64,...``) or of plain base64."""
    m = _DATA_URL.match(text)
    if m:
        kind = (m.group(1) or "").lower()
        if kind and kind not in ACCEPTED and kind != "application/octet-stream":
            raise InvalidArgument(f"a picture of type {kind}: JPEG, PNG or WebP only")
        text = text[m.end():]
    elif text.startswith(("http://", "https://")):
        raise InvalidArgument("a picture is sent inline (a data URL or base64): this server fetches no URL")
    elif text.startswith("data:"):
        raise InvalidArgument("a picture's data URL must be base64 (data:image/png;base64,...)")
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("the picture is not valid base64") from None
    if len(data) > MAX_BYTES:
        raise InvalidArgument(f"the picture has {len(data)} bytes; at most {MAX_BYTES}")
    return data
