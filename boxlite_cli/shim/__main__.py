import sys
from pathlib import Path

# The VMM first, with light imports only: a restore loads while the rest of the shim
# (gRPC, protobuf) is imported.
from boxlite_cli.shim.vmmproc import start_early

early = start_early(Path(sys.argv[1])) if len(sys.argv) > 2 else None

from boxlite_cli.shim.main import main  # noqa: E402

sys.exit(main(sys.argv, early))
