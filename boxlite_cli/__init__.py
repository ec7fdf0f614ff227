"""boxlite: run OCI container images inside per-box micro-VMs."""

__version__ = "0.1.0"
