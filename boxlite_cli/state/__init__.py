"""On-disk state: XDG paths, locked JSON records, PID files."""
