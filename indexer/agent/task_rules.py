"""The task queue's rules as pure functions and records: statuses, limits, validation, the
lease. :class:`indexer.agent.tasks.TaskService` applies them; nothing here touches SQL.

Statuses::

    submit ──► blocked ──(every dependency completed)──► pending ──claim──► running
                  │                                     ▲    │                │
                  │                         fail/reclaim │    │                ├─ complete ─► completed
                  │                          (retries    └────┼────────────────┤
                  │                           left)           │                ├─ fail/reclaim, retries spent ─► failed
                  └──────────────── cancel ───────────────────┴──── cancel ────┴─► cancelled

A task that fails for good or is cancelled cancels its blocked dependents (transitively):
they could never run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from indexer.agent.common import check_text
from indexer.errors import ConflictError, ValidationError
from indexer.timeutil import parse_ts

STATUSES = ("blocked", "pending", "running", "completed", "failed", "cancelled")
FINAL = ("completed", "failed", "cancelled")
CANCELLABLE = ("blocked", "pending", "running")
AGENT_STATES = ("busy", "terminated")
PRIORITY_RANGE = (0, 10)
DEFAULT_PRIORITY = 5
DEFAULT_MAX_RETRIES = 3
MAX_RETRIES_LIMIT = 100
DEFAULT_TIMEOUT_SECONDS = 3600
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
DEFAULT_LEASE_SECONDS = 60.0
MAX_LEASE_SECONDS = 24 * 3600.0
MAX_DEPENDENCIES = 1000


@dataclass(frozen=True)
class Task:
    id: str
    prompt: str
    agent_type: str
    priority: int
    status: str
    input_data: Any
    result_data: Any
    error_message: str | None
    retry_count: int
    max_retries: int
    max_execution_timeout_seconds: int
    submitted_at: str
    started_at: str | None
    completed_at: str | None
    last_updated_at: str
    created_by: str | None
    parent_task_id: str | None
    dependencies: tuple[str, ...]
    session_id: str | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dependencies"] = list(self.dependencies)
        return data


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    specialization: str
    task_id: str
    state: str
    model: str
    spawned_at: str
    terminated_at: str | None
    resource_usage: dict[str, Any]
    session_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    """A claimed task, the agent row that holds it, and when its lease runs out (unless
    heartbeats extend it; never later than started_at + max_execution_timeout_seconds)."""

    task: Task
    agent_id: str
    lease_seconds: float
    lease_expires_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task.as_dict(), "agent_id": self.agent_id, "lease_seconds": self.lease_seconds,
                "lease_expires_at": self.lease_expires_at}


@dataclass(frozen=True)
class Checkpoint:
    task_id: str
    iteration: int
    state: Any
    created_at: str
    session_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _loads(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text  # a legacy row that is not JSON: shown as it is, never lost


def task_from_row(row: Any) -> Task:
    deps = _loads(row["dependencies"])
    return Task(
        id=row["id"], prompt=row["prompt"], agent_type=row["agent_type"], priority=int(row["priority"]),
        status=row["status"], input_data=_loads(row["input_data"]), result_data=_loads(row["result_data"]),
        error_message=row["error_message"], retry_count=int(row["retry_count"] or 0),
        max_retries=int(row["max_retries"] if row["max_retries"] is not None else DEFAULT_MAX_RETRIES),
        max_execution_timeout_seconds=int(row["max_execution_timeout_seconds"] or DEFAULT_TIMEOUT_SECONDS),
        submitted_at=row["submitted_at"], started_at=row["started_at"], completed_at=row["completed_at"],
        last_updated_at=row["last_updated_at"], created_by=row["created_by"], parent_task_id=row["parent_task_id"],
        dependencies=tuple(str(d) for d in deps) if isinstance(deps, list) else (), session_id=row["session_id"],
    )


def agent_from_row(row: Any) -> Agent:
    usage = _loads(row["resource_usage"])
    return Agent(id=row["id"], name=row["name"], specialization=row["specialization"], task_id=row["task_id"],
                 state=row["state"], model=row["model"], spawned_at=row["spawned_at"],
                 terminated_at=row["terminated_at"], resource_usage=usage if isinstance(usage, dict) else {},
                 session_id=row["session_id"])


def checkpoint_from_row(row: Any) -> Checkpoint:
    return Checkpoint(task_id=row["task_id"], iteration=int(row["iteration"]), state=_loads(row["state"]),
                      created_at=row["created_at"], session_id=row["session_id"])


# --- validation ------------------------------------------------------------------------------------

def _int_in(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return value


def check_prompt(prompt: Any) -> str:
    """A non-empty string; newlines and tabs are fine (prompts are paragraphs)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationError(f"prompt must be a non-empty string, got {prompt!r}")
    if any((ord(ch) < 32 and ch not in "\n\t\r") or ord(ch) == 127 for ch in prompt):
        raise ValidationError("prompt must not contain control characters other than newlines and tabs")
    return prompt


def check_priority(priority: Any) -> int:
    return _int_in(priority, "priority", *PRIORITY_RANGE)


def check_max_retries(value: Any) -> int:
    return _int_in(value, "max_retries", 0, MAX_RETRIES_LIMIT)


def check_timeout(value: Any) -> int:
    return _int_in(value, "max_execution_timeout_seconds", 1, MAX_TIMEOUT_SECONDS)


def check_lease(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_LEASE_SECONDS:
        raise ValidationError(f"lease must be a number of seconds above 0 and at most {MAX_LEASE_SECONDS:g}, got {value!r}")
    return float(value)


def check_dependencies(dependencies: Any, task_id: str | None) -> tuple[str, ...]:
    """Task ids, each once (repeats dropped, order kept); a task never depends on itself."""
    if dependencies is None:
        return ()
    if isinstance(dependencies, (str, bytes)) or not isinstance(dependencies, (list, tuple)):
        raise ValidationError(f"dependencies must be a list of task ids, got {type(dependencies).__name__}")
    if len(dependencies) > MAX_DEPENDENCIES:
        raise ValidationError(f"a task may have at most {MAX_DEPENDENCIES} dependencies, got {len(dependencies)}")
    ids = tuple(dict.fromkeys(check_text(d, "a dependency") for d in dependencies))
    if task_id is not None and task_id in ids:
        raise ValidationError(f"task {task_id} cannot depend on itself (a dependency cycle)")
    return ids


def check_status(status: Any) -> str:
    if status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return str(status)


def check_agent_state(state: Any) -> str:
    if state not in AGENT_STATES:
        raise ValidationError(f"agent state must be one of {', '.join(AGENT_STATES)}, got {state!r}")
    return str(state)


def initial_status(dependency_statuses: dict[str, str], task_id: str) -> str:
    """blocked while a dependency is not completed, else pending; a dependency that failed or
    was cancelled is a ConflictError (the task could never run)."""
    dead = sorted(d for d, s in dependency_statuses.items() if s in ("failed", "cancelled"))
    if dead:
        raise ConflictError(f"task {task_id} cannot depend on {dead[0]}: it is {dependency_statuses[dead[0]]} "
                            "and will never complete")
    return "pending" if all(s == "completed" for s in dependency_statuses.values()) else "blocked"


def check_holder(task: Task, holder: str | None, agent_id: str | None, action: str) -> None:
    """ConflictError unless the task is running and, when ``agent_id`` is given, held by it."""
    if task.status != "running":
        raise ConflictError(f"task {task.id} is {task.status}: cannot {action} (only a running task can)")
    if agent_id is not None and holder != agent_id:
        raise ConflictError(f"task {task.id} is no longer held by agent {agent_id} "
                            f"(its lease expired and it was reclaimed): cannot {action}")


# --- the lease ----------------------------------------------------------------------------------------

def lease_deadline(last_beat: str, lease_seconds: float, started_at: str | None, timeout_seconds: int) -> datetime:
    """When a running task may be reclaimed: its last heartbeat plus the lease, or its start
    plus max_execution_timeout_seconds, whichever comes first."""
    deadline = parse_ts(last_beat) + timedelta(seconds=lease_seconds)
    if started_at is not None:
        deadline = min(deadline, parse_ts(started_at) + timedelta(seconds=timeout_seconds))
    return deadline


def expiry_reason(row: Any, now: datetime) -> str | None:
    """Why a running task (a row of :data:`hot_queries.TASK_RECLAIM`) may be reclaimed at
    ``now``, or None while its lease holds. A task without a busy agent (claimed by other
    code) gets the default lease."""
    lease = float(row["lease_seconds"]) if row["lease_seconds"] is not None else DEFAULT_LEASE_SECONDS
    timeout = int(row["max_execution_timeout_seconds"] or DEFAULT_TIMEOUT_SECONDS)
    if row["started_at"] is not None and now >= parse_ts(row["started_at"]) + timedelta(seconds=timeout):
        return f"ran longer than max_execution_timeout_seconds ({timeout} s)"
    if now >= parse_ts(row["last_updated_at"]) + timedelta(seconds=lease):
        return f"lease of {lease:g} s expired (last heartbeat {row['last_updated_at']})"
    return None


def retry_or_fail(retry_count: int, max_retries: int) -> str:
    """The status after a failed attempt: pending while retries are left, else failed."""
    return "pending" if retry_count < max_retries else "failed"
