"""The detach keys of a terminal joined to a box (attach, run -it): docker's notation
(`ctrl-p,ctrl-q`) and the scanner that finds them in what is typed."""

from __future__ import annotations

from boxlite_cli.errors import UsageError

DETACH_KEYS = b"\x10\x11"  # Ctrl-P Ctrl-Q, docker's
CTRL_KEYS = "abcdefghijklmnopqrstuvwxyz@[\\]^_"  # ctrl-KEY is KEY's upper case less 64


def parse_detach_keys(spec: str) -> bytes:
    """docker's --detach-keys: keys apart by commas, each one character or ctrl-KEY
    (KEY a-z, @, [, \\, ], ^ or _): `ctrl-p,ctrl-q`, `ctrl-a,d`; "" is the default
    keys, as docker takes it. Raises UsageError."""
    if not spec:
        return DETACH_KEYS
    keys = bytearray()
    for key in spec.split(","):
        lowered = key.lower()
        if lowered.startswith("ctrl-") and len(key) == 6 and lowered[5] in CTRL_KEYS:
            keys.append(ord(lowered[5].upper()) - 64)
        elif len(key) == 1 and 0x20 < ord(key) < 0x7F:
            keys.append(ord(key))
        else:
            raise UsageError(f"invalid detach key '{key}' in '{spec}'",
                             hint="keys apart by commas, each a character or ctrl-KEY "
                                  "(a-z, @, [, \\, ], ^, _): ctrl-p,ctrl-q")
    return bytes(keys)


class DetachScanner:
    """Finds the detach keys in typed input, across reads; what comes before them is
    passed on, a partial match held back until it is known not to be one."""

    def __init__(self, keys: bytes = DETACH_KEYS) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(the bytes to send on, whether the keys were typed)."""
        data = self.held + data
        self.held = b""
        at = data.find(self.keys)
        if at >= 0:
            return data[:at], True
        for n in range(min(len(self.keys) - 1, len(data)), 0, -1):
            if self.keys.startswith(data[-n:]):
                self.held = data[-n:]
                return data[:-n], False
        return data, False
