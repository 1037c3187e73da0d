"""User text made safe to store and to render anywhere (iCalendar, HTML, email)."""

from __future__ import annotations

import re

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
NEWLINES = re.compile(r"\r\n|\r|\n")


def clean_text(value: str) -> str:
    """One kind of newline, no control characters, no surrounding blanks."""
    return CONTROL_CHARS.sub("", NEWLINES.sub("\n", value or "")).strip()


def one_line(value: str) -> str:
    """Clean text on a single line (names, titles)."""
    return " ".join(clean_text(value).split())
