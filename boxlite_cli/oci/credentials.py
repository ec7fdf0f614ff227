"""Registry credentials: boxlite's own `auth.json` (0600), then docker's config.

Both files use docker's format: `{"auths": {"<registry>": {"auth": base64("user:pass")}}}`.
From `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) boxlite also honours
`credHelpers` and `credsStore` by running `docker-credential-<name> get`, as docker does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boxlite_cli.errors import AuthError
from boxlite_cli.oci.reference import DEFAULT_REGISTRY, LEGACY_REGISTRY
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.flock import FileLock

AUTH_FILE = "auth.json"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT_S = 20


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password by accident
        return f"Credentials(username={self.username!r}, password=***)"


def normalize_registry(server: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `http://host:5000/x` → `host:5000`."""
    host = server.strip()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme):]
    host = host.split("/", 1)[0].lower()
    if host in (LEGACY_REGISTRY, "registry-1.docker.io", ""):
        return DEFAULT_REGISTRY
    return host


def _decode_auth(entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Credentials(user, password) if sep else None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"])
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # an unreadable docker config must not break pulls of public images
    return data if isinstance(data, dict) else {}


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _from_helper(helper: str, registry: str) -> tuple[Credentials | None, str | None]:
    """A credential helper's answer, and what went wrong with it (None: nothing)."""
    server = DOCKER_HUB_KEY if registry == DEFAULT_REGISTRY else registry
    program = f"docker-credential-{helper}"
    try:
        out = subprocess.run([program, "get"], input=server.encode(),
                             capture_output=True, timeout=HELPER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return None, f"the credential helper {program} did not answer"
    except OSError as e:
        return None, f"the credential helper {program} cannot run ({e.strerror or e})"
    said = (out.stdout + out.stderr).decode(errors="replace").strip().splitlines()
    if out.returncode != 0:
        if said and said[-1].strip() == "credentials not found in native keychain":
            return None, None  # (the helper has none for it: docker's "not logged in")
        return None, (f"the credential helper {program} failed (exit status {out.returncode}"
                      + (f": {said[-1].strip()[:200]}" if said else "") + ")")
    try:
        data = json.loads(out.stdout)
        user, secret = data.get("Username"), data.get("Secret")
    except (ValueError, AttributeError):
        return None, f"the credential helper {program} answered something other than JSON"
    if isinstance(user, str) and isinstance(secret, str) and user != "<token>":
        return Credentials(user, secret), None
    return None, None


class CredentialStore:
    """Looks up and saves registry credentials for one boxlite home."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / AUTH_FILE
        self._lock = FileLock(str(config_dir / (AUTH_FILE + ".lock")), timeout=30)

    @staticmethod
    def _matching(auths: Any, registry: str) -> Any:
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if isinstance(key, str) and normalize_registry(key) == registry:
                return entry
        return None

    def get(self, registry: str) -> Credentials | None:
        """Credentials for `registry`: boxlite's login first, then docker's config."""
        return self.lookup(registry)[0]

    def lookup(self, registry: str) -> tuple[Credentials | None, str | None]:
        """Credentials for `registry`, and why there are none where a source of them
        failed (a credential helper, an entry that cannot be decoded): a pull that then
        needs a login says so, instead of only "requires a login"."""
        registry = normalize_registry(registry)
        own_entry = self._matching(_read_json(self.path).get("auths"), registry)
        own = _decode_auth(own_entry)
        if own is not None:
            return own, None
        docker = _read_json(docker_config_path())
        helpers = docker.get("credHelpers")
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if isinstance(helper, str) and normalize_registry(str(key)) == registry:
                    return _from_helper(helper, registry)
        entry = self._matching(docker.get("auths"), registry)
        found = _decode_auth(entry)
        problem = None
        if found is None and isinstance(docker.get("credsStore"), str):
            found, problem = _from_helper(docker["credsStore"], registry)
        if found is None and problem is None and (entry or own_entry):
            where = self.path if own_entry else docker_config_path()
            problem = f"the entry for {registry} in {where} cannot be read"
        return found, problem

    def save(self, registry: str, creds: Credentials) -> None:
        if ":" in creds.username:
            raise AuthError("a username cannot contain ':'")
        registry = normalize_registry(registry)
        token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        with self._lock:
            data = _read_json(self.path)
            auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
            assert isinstance(auths, dict)
            for key in [k for k in auths if normalize_registry(k) == registry]:
                del auths[key]
            auths[registry] = {"auth": token}
            data["auths"] = auths
            write_json_atomic(self.path, data, 0o600)

    def remove(self, registry: str) -> bool:
        """Forget boxlite's credentials for `registry`; False when there were none."""
        registry = normalize_registry(registry)
        with self._lock:
            data = _read_json(self.path)
            auths = data.get("auths")
            if not isinstance(auths, dict):
                return False
            keys = [k for k in auths if normalize_registry(k) == registry]
            for key in keys:
                del auths[key]
            if keys:
                write_json_atomic(self.path, data, 0o600)
            return bool(keys)

