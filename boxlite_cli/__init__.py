"""boxlite: run OCI container images inside per-box micro-VMs."""

import os as _os

__version__ = "0.1.0"

# gRPC's C core logs its transport's events (a GOAWAY when a box restarts, say) to the
# user's stderr unless told otherwise; boxlite says what matters itself. (Set before any
# import of grpc, in this process and in the shims it starts; a user's own setting wins.)
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
