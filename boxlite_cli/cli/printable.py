"""Text fit for a terminal (kept apart from output.py: every command's error path loads
it, and it needs only `re`)."""

from __future__ import annotations

import re

# Control characters (escape sequences, newlines, DEL, C1) and the bidirectional
# overrides: text from a box, an image or an imported archive must not drive the
# terminal it is printed on, nor break a line or a table.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with its control characters written as escapes (\\x1b, \\u202e)."""
    return _UNPRINTABLE.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                       else f"\\u{ord(m.group()):04x}"), text)
