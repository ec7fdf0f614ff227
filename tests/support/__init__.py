"""Test infrastructure for image pulls: a real registry, a fault proxy, OCI image builders.

- `registry`    RegistryServer: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1
- `tokenserver` TokenServer: the Docker token protocol, RS256 JWTs with an x5c header
- `faultproxy`  FaultProxy: an HTTP proxy in front of a registry with switchable faults
- `ocibuild`    layers, images and indexes built in pure Python (deterministic digests)
- `ocipush`     push them with the registry HTTP API v2 (basic and Bearer auth)
- `ociarchive`  write them as `docker save` tarballs and OCI image layouts
- `testimages`  the catalogue of images the e2e tests use (busybox, multi-layer, hostile...)
- `fixtures`    pytest fixtures over all of the above
"""
