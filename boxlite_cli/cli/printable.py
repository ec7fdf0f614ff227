"""Text fit for a terminal (kept apart from output.py: every command's error path loads
it, and it needs only `re`)."""

from __future__ import annotations

import re

# Control characters (escape sequences, newlines, DEL, C1) and the bidirectional
# overrides: text from a box, an image or an imported archive must not drive the
# terminal it is printed on, nor break a line or a table.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

_UNPRINTABLE_OR_BACKSLASH = re.compile(r"\\|" + _UNPRINTABLE.pattern)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: str, *, unambiguous: bool = False) -> str:
    r"""`text` with its control characters written as escapes (\x1b, \u202e); with
    `unambiguous`, each backslash as \\ too, so that no name reads as another's escape."""
    return (_UNPRINTABLE_OR_BACKSLASH if unambiguous else _UNPRINTABLE).sub(_escape, text)
