"""OCI images: references, the local store, layer unpacking."""
