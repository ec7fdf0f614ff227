import os
import sys
from pathlib import Path

from boxlite_cli.shim.prestart import PRESTARTED_FLAG, serve
from boxlite_cli.shim.spareclaim import SPARE_FLAG

if len(sys.argv) > 2 and sys.argv[1] == PRESTARTED_FLAG:  # see shim/prestart.py
    sys.exit(serve(int(sys.argv[2])))
if len(sys.argv) > 2 and sys.argv[1] == SPARE_FLAG:  # see shim/spare.py
    from boxlite_cli.shim.spare import serve_spare

    sys.exit(serve_spare(Path(sys.argv[2])))

# The VMM first, with light imports only: a restore loads while the rest of the shim
# (gRPC, protobuf) is imported. Launched by shim/launcher.py, this process started it
# before it executed itself into the shim: then it only adopts it.
from boxlite_cli.shim.vmmproc import VmmProcess, adopt_early, start_early

_adopt = os.environ.pop("BOXLITE_SHIM_VMM", None)
early: VmmProcess | BaseException | None
if _adopt is not None:
    early = adopt_early(_adopt)
else:
    early = start_early(Path(sys.argv[1])) if len(sys.argv) > 2 else None

from boxlite_cli.shim.main import main  # noqa: E402

sys.exit(main(sys.argv, early))
