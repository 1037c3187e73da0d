"""Photos sent with a request: images only, re-encoded so no metadata or payload survives."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from server.errors import InvalidInput

MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTOS = 5
MAX_FORM_BYTES = MAX_PHOTOS * MAX_PHOTO_BYTES + 1024 * 1024  # a request form with its photos
MAX_PIXELS = 40_000_000  # a decompression bomb is refused before it is decoded
KEPT_EDGE = 2560  # longer edge kept; a nameplate stays readable
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/png",
           "HEIF": "image/jpeg", "BMP": "image/png"}


@dataclass(frozen=True)
class Photo:
    """A photo ready to store: re-encoded bytes, their type and a display name."""

    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def clean_photo(filename: str, raw: bytes) -> Photo:
    """Check that `raw` is an image of an allowed type and size; re-encode it without metadata."""
    from PIL import Image, UnidentifiedImageError  # loaded with the first photo, not by every worker

    name = (filename or "photo").replace("\\", "/").rsplit("/", 1)[-1][:200] or "photo"
    if len(raw) > MAX_PHOTO_BYTES:
        raise InvalidInput(f"{name} is larger than 5 MB; please send a smaller photo.")
    if not raw:
        raise InvalidInput(f"{name} is empty.")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            kind = probe.format or ""
            width, height = probe.size
            if kind not in FORMATS:
                raise InvalidInput(f"{name} is not a photo (JPEG, PNG, WebP or GIF).")
            if width * height > MAX_PIXELS:
                raise InvalidInput(f"{name} has too many pixels ({width}×{height}).")
            probe.seek(0)
            image = probe.convert("RGB" if FORMATS[kind] == "image/jpeg" else "RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"{name} is not a photo we can read (JPEG, PNG, WebP or GIF).") from exc
    image.thumbnail((KEPT_EDGE, KEPT_EDGE))
    out = io.BytesIO()
    content_type = FORMATS[kind]
    if content_type == "image/jpeg":
        image.save(out, "JPEG", quality=85)  # no exif= argument: EXIF (GPS, serials) is dropped
    elif content_type == "image/webp":
        image.save(out, "WEBP", quality=85)
    else:
        image.save(out, "PNG", optimize=True)
        content_type = "image/png"
    return Photo(filename=name, content_type=content_type, data=out.getvalue())
