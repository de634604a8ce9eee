"""The pixel cap every image decoder applies before it decodes.

A PNG of 20000x20000 pixels compresses to a few hundred KB but decodes to 1.2 GB (and OpenCV needs several times
that while decoding): on a 4 GB Jetson Nano one such photo in a gallery folder would end `identify` or `enrol`.
So the width and height are read from the file's header (PIL reads only the header on open) and an image over
MAX_IMAGE_PIXELS is refused by name, before any pixel is decoded.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from pathlib import Path

from ..errors import UserError

# 50 megapixels: the largest phone and robot cameras (48-50 MP) pass; decoded RGB it is 150 MB.
MAX_IMAGE_PIXELS = 50_000_000


def too_large(width: int, height: int, where: str | Path) -> UserError | None:
    """The error for an image of width x height pixels over the cap, or None."""
    if width * height <= MAX_IMAGE_PIXELS:
        return None
    return UserError(f"{where}: {width}x{height} pixels ({width * height / 1e6:.0f} MP) is over the "
                     f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP cap (decoded it would take {3 * width * height / 2**30:.1f} "
                     "GiB); resize the photo")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header without decoding its pixels; None when PIL cannot read
    the header (the decoder then reports the file as unreadable). Past PIL's own decompression-bomb limit
    (about 179 MP) PIL refuses even the header: the size is then read from a PNG's IHDR, or taken from PIL's
    pixel count as (count, 1)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as e:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        m = re.search(r"\((\d+) pixels\)", str(e))
        return (int(m.group(1)) if m else 4 * MAX_IMAGE_PIXELS), 1
    except Exception:  # noqa: BLE001 - not an image PIL knows: leave the verdict to the decoder
        return None


def check_bytes(data: bytes, where: str | Path) -> None:
    """A UserError naming `where` when the encoded image `data` is over the pixel cap."""
    size = header_size(data)
    err = too_large(*size, where) if size else None
    if err is not None:
        raise err
