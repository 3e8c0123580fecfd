"""The engine-neutral records both implementations report in: a migration (name, SQL and its
checksum), a migration run's report, and a doctor check; and the JSON both store (compact,
UTF-8 as is). No SQL and no driver here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


def compact_json(value: Any) -> str:
    """``value`` as both engines store JSON: no spaces, non-ASCII text as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def audit_params(ts: str, action: str, op: str, ns: str, entry: int | None, data: dict[str, Any]) -> tuple[Any, ...]:
    """A memory audit row's insert parameters, in INSERT_AUDIT's order, its data as compact JSON."""
    return (ts, action, op, ns, entry, compact_json(data))


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
