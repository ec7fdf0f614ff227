"""User settings from `<config dir>/config.toml`, with environment overrides.

    insecure_registries = ["registry.lan:5000", "10.0.0.0/8"]   # plain HTTP (or unverified
                      # TLS) allowed; docker's forms: HOST[:PORT], http://HOST[:PORT], CIDR
    vmm = "auto"      # default --vmm of new boxes: auto, qemu or cloud-hypervisor
    [registry]
    timeout = 30      # seconds without progress before a request fails
    retries = 3       # extra attempts after a network error, 429 or 5xx

`BOXLITE_INSECURE_REGISTRIES` (comma-separated), `BOXLITE_REGISTRY_TIMEOUT` and
`BOXLITE_REGISTRY_RETRIES` override the file; `BOXLITE_VMM` overrides `vmm`.

A registry's own CA certificates, as docker's and podman's: `*.crt` files in
`<config dir>/certs.d/HOST[:PORT]/`, `/etc/containers/certs.d/HOST[:PORT]/` or
`/etc/docker/certs.d/HOST[:PORT]/`, trusted for that registry beside the usual ones;
its client certificates there too: each `*.cert` with the `*.key` of its name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxlite_cli.errors import UsageError

CONFIG_FILE = "config.toml"
CERTS_DIR = "certs.d"
SYSTEM_CERT_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")


@dataclass(frozen=True)
class RegistrySettings:
    insecure: frozenset[str] = field(default_factory=frozenset)
    timeout_s: float = 30.0
    retries: int = 3
    # where a registry's CA certificates are looked for (HOST[:PORT]/*.crt), ours first
    cert_dirs: tuple[Path, ...] = ()
    config_file: Path = Path(CONFIG_FILE)  # (where insecure_registries would be set)


def _number(source: str, value: Any, kind: type[int] | type[float], minimum: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: expected a number, got {value!r}") from None
    if number < minimum:
        raise UsageError(f"{source}: must be at least {minimum}, got {value!r}")
    return number


def read_config(config_dir: Path) -> dict[str, Any]:
    path = config_dir / CONFIG_FILE
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}", hint="fix or remove the file") from e
    import tomllib  # (only with a config file: ~5 ms of every command otherwise)

    try:
        with f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}", hint="fix or remove the file") from e
    _check_keys(path, data, KEYS, "")
    if isinstance(data.get("registry"), dict):
        _check_keys(path, data["registry"], REGISTRY_KEYS, "registry.")
    return data


KEYS = ("insecure_registries", "vmm", "registry")
REGISTRY_KEYS = ("timeout", "retries")


def _check_keys(path: Path, table: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    """A key the file has that boxlite does not know (a typo, or docker's daemon.json
    spelling) is refused, not ignored: what it meant to set would silently not be."""
    for key in table:
        if key not in known:
            near = key.replace("-", "_").lower()
            hint = (f"did you mean {prefix}{near}?" if near in known
                    else f"its keys: {', '.join(prefix + k for k in known)}")
            raise UsageError(f"{path}: unknown setting {prefix}{key!r}", hint=hint)


def registry_settings(config_dir: Path) -> RegistrySettings:
    """The registry settings of this home: config file, then environment."""
    data = read_config(config_dir)
    section = data.get("registry") or {}
    insecure = data.get("insecure_registries") or []
    if not isinstance(insecure, list) or not all(isinstance(x, str) for x in insecure):
        raise UsageError(f"{config_dir / CONFIG_FILE}: insecure_registries must be a list of strings")
    env_insecure = os.environ.get("BOXLITE_INSECURE_REGISTRIES", "")
    hosts = {insecure_entry(h, config_dir / CONFIG_FILE)
             for h in [*insecure, *env_insecure.split(",")] if h.strip()}
    timeout = os.environ.get("BOXLITE_REGISTRY_TIMEOUT", section.get("timeout", 30.0))
    retries = os.environ.get("BOXLITE_REGISTRY_RETRIES", section.get("retries", 3))
    return RegistrySettings(
        insecure=frozenset(hosts),
        timeout_s=_number("registry timeout", timeout, float, 0.1),
        retries=_number("registry retries", retries, int, 0),
        cert_dirs=(config_dir / CERTS_DIR, *map(Path, SYSTEM_CERT_DIRS)),
        config_file=config_dir / CONFIG_FILE,
    )


def insecure_entry(entry: str, config_file: Path) -> str:
    """An insecure registry as it is matched: `HOST[:PORT]` (docker's `http://` before it
    and `/` after it dropped), or a CIDR range of addresses."""
    value = entry.strip()
    for scheme in ("http://", "https://"):
        if value.lower().startswith(scheme):
            value = value[len(scheme):]
    value = value.rstrip("/")
    if "/" in value:
        import ipaddress

        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise UsageError(f"insecure registry {entry!r} (of {config_file} or "
                             "BOXLITE_INSECURE_REGISTRIES) is neither HOST[:PORT] nor a CIDR "
                             "range") from None
    return value


def vmm_setting(config_dir: Path) -> str | None:
    """The `vmm` key of config.toml (validated by the caller), or None."""
    value = read_config(config_dir).get("vmm")
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{config_dir / CONFIG_FILE}: vmm must be a string, got {value!r}")
    return value
