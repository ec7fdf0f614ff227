"""What the guest's network interfaces received and sent (docker's NET I/O): the box has
no network namespace of its own, so the VM's interfaces are the box's."""

from __future__ import annotations

PROC_NET_DEV = "/proc/net/dev"


def parse_net_dev(text: str) -> tuple[int, int]:
    """(received, sent) bytes of every interface but lo in /proc/net/dev's text."""
    received = sent = 0
    for line in text.splitlines()[2:]:  # (two header lines)
        name, colon, fields = line.partition(":")
        values = fields.split()
        if not colon or name.strip() == "lo" or len(values) < 9:
            continue
        try:
            received += int(values[0])
            sent += int(values[8])
        except ValueError:
            continue
    return received, sent


def net_bytes(path: str = PROC_NET_DEV) -> tuple[int, int]:
    """(received, sent) bytes of the guest's interfaces but lo; (0, 0) if unreadable."""
    try:
        with open(path) as f:
            return parse_net_dev(f.read())
    except OSError:
        return 0, 0
