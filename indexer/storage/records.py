"""The engine-neutral records both implementations report in: a migration (name, SQL and its
checksum), a migration run's report, and a doctor check. No SQL and no driver here."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass
class MigrationReport:
    path: str
    kind: str
    pending: list[str]
    applied: list[str] = field(default_factory=list)
    dry_run: bool = False
    backup: str | None = None
    legacy: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    observed: Any
    expected: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
