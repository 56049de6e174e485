"""The audit log's role: every change an admin key made, by the key's name (never the key)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    key_name: str | None
    """None when the service runs with no key configured (open on loopback)."""
    method: str
    path: str
    change: Any
    """The request's JSON body, as the admin sent it (None for a change without a body)."""


class AuditLog(Protocol):
    def record(
        self, *, key_name: str | None, method: str, path: str, change: Mapping[str, Any] | None
    ) -> None: ...

    def newest(self, limit: int) -> list[AuditEntry]: ...
