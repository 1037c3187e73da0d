"""Helpers for the request form tests: solving the proof of work, sample photos, posting."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re

from PIL import Image

CHALLENGE = re.compile(r'data-challenge="([^"]+)"')
STARTED = re.compile(r'name="started" value="([^"]+)"')


def unescape(text: str) -> str:
    return text.replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&")


def solve(page: str) -> str:
    """The ALTCHA payload a browser would send for the challenge on `page`."""
    challenge = json.loads(unescape(CHALLENGE.search(page).group(1)))  # type: ignore[union-attr]
    for number in range(challenge["maxnumber"] + 1):
        digest = hashlib.sha256(f"{challenge['salt']}{number}".encode()).hexdigest()
        if digest == challenge["challenge"]:
            payload = {"algorithm": challenge["algorithm"], "challenge": challenge["challenge"],
                       "number": number, "salt": challenge["salt"],
                       "signature": challenge["signature"]}
            return base64.b64encode(json.dumps(payload).encode()).decode()
    raise AssertionError("the challenge has no solution")


def started(page: str) -> str:
    return STARTED.search(page).group(1)  # type: ignore[union-attr]


def jpeg_with_exif(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    image = Image.new("RGB", (64, 48), color)
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "serial-0042"  # Software
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def fields(**changes: str) -> dict[str, str]:
    values = {"name": "Greta Hahn", "email": "greta@hahn.example", "phone": "",
              "address": "Werkstr. 5, 10115 Berlin", "make": "Kaeser", "model": "SK 22",
              "serial": "KS-9911", "problem": "Compressor trips after 5 minutes",
              "urgency": "high", "website": ""}
    values.update(changes)
    return values
