"""API keys and their roles: who may call what, and on whose behalf.

A key is kept only as its SHA-256 digest. The configuration may give the key itself or the
digest (``sha256:<64 hex digits>``), so a config file or a ConfigMap need not hold a secret; a
presented key is hashed once and compared with every configured digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "client", "metrics"]
ROLES: tuple[Role, ...] = ("admin", "client", "metrics")

RequiredRole = Literal["open", "any", "admin", "client", "metrics"]
"""What an endpoint asks of its caller: no key at all (``open``), any valid key (``any``), or
a role. An admin key passes every check."""

DIGEST_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class MalformedKey(ValueError):
    """A configured key is malformed; the message names its position, never the key."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name (shown in the audit log), role, tenant and digest."""

    name: str
    role: Role
    digest: bytes
    tenant: str | None = None


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, once its key is known."""

    name: str | None
    role: Role
    tenant: str | None = None

    def may(self, required: RequiredRole) -> bool:
        if required in ("open", "any") or self.role == "admin":
            return True
        return self.role == required

    @property
    def sees_every_tenant(self) -> bool:
        """Admins see every tenant's decisions; a client key sees its own tenant's only."""
        return self.role == "admin"


OPEN_ACCESS = Principal(name=None, role="admin")
"""The caller of a service with no key configured (it then serves on loopback only)."""


def digest_of(value: str, where: str) -> bytes:
    """The SHA-256 digest a configured value stands for: the digest it writes out after
    ``sha256:``, or the hash of the plain key. ``where`` names the value in errors."""
    if value.startswith(DIGEST_PREFIX):
        written = value[len(DIGEST_PREFIX) :]
        if not _HEX_DIGEST.fullmatch(written):
            raise MalformedKey(
                f"{where}: a key written as sha256:… needs exactly 64 hexadecimal digits "
                f"after the prefix (this one has {len(written)} characters)"
            )
        return bytes.fromhex(written)
    if not value.strip():
        raise MalformedKey(f"{where}: an API key may not be blank")
    return hashlib.sha256(value.encode()).digest()


class KeyRing:
    """The configured keys, looked up by the key a request presents."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)
        # Built once: a request is handed the principal of its key, not a new one.
        self._principals = tuple(
            (key.digest, Principal(name=key.name, role=key.role, tenant=key.tenant))
            for key in self.keys
        )

    def __bool__(self) -> bool:
        return bool(self.keys)

    @property
    def has_admin(self) -> bool:
        return any(key.role == "admin" for key in self.keys)

    def identify(self, presented: bytes) -> Principal | None:
        """The principal of the presented key, or None when no configured key matches.

        Every digest is compared, in constant time, so the answer's timing tells nothing of
        which key (or how much of one) matched."""
        digest = hashlib.sha256(presented).digest()
        found: Principal | None = None
        for key_digest, principal in self._principals:
            if hmac.compare_digest(digest, key_digest):
                found = principal
        return found
