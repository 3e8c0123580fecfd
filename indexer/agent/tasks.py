"""TaskService: a job queue for agents on the ``tasks``, ``agents`` and ``checkpoints`` tables.

Submit a task (with a priority, dependencies, a parent, a session and limits); workers
**claim** the next runnable one (every dependency completed; highest priority, then oldest)
and hold it by a **lease** that **heartbeats** extend; they **complete** it with a result or
**fail** it with an error (retried until ``max_retries``). A task whose lease or
``max_execution_timeout_seconds`` runs out (its worker died) is **reclaimed**: back to pending
with ``retry_count + 1``, or failed when its retries are spent. Every claim reclaims first,
so a queue with live workers needs no reaper. The rules are in
:mod:`indexer.agent.task_rules`.

Every operation is one transaction: two processes never claim the same task, and each state
change writes its audit row in the transaction that makes it. The rules are written once here;
the SQL is the engine's, chosen by :func:`indexer.storage.engines.task_statements`: SQLite
(:mod:`indexer.storage.sqlite.task_store`, every operation under ``BEGIN IMMEDIATE``) or PostgreSQL
(:mod:`indexer.storage.postgres.task_store`: claims with ``FOR UPDATE SKIP LOCKED``, other
changes after the task's row lock, each a compare-and-set on the expected status).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from indexer.agent import task_rules as rules
from indexer.agent.common import DEFAULT_LIMIT, check_text, keyset_after, keyset_page, to_json, validate_limit
from indexer.agent.task_rules import Agent, Checkpoint, Claim, Task
from indexer.errors import ConflictError, NotFoundError, ValidationError
from indexer.storage import engines
from indexer.storage.protocols import AgentDatabase, TaskStatements
from indexer.timeutil import format_ts

Clock = Callable[[], datetime]
OPEN_SESSION = ("created", "active", "paused")


def _system_clock() -> datetime:
    return datetime.now(UTC)


# --- operations run on the connection's thread, one transaction each ----------------------------

def _task(conn: Any, store: TaskStatements, task_id: str) -> Task:
    row = store.get_task(conn, task_id)
    if row is None:
        raise NotFoundError(f"no task {task_id}")
    return rules.task_from_row(row)


def _submit(conn: Any, store: TaskStatements, fields: dict[str, Any], deps: tuple[str, ...], now: str) -> Any:
    task_id = fields["task_id"]
    if store.get_task(conn, task_id) is not None:
        raise ConflictError(f"task {task_id} already exists")
    parent = fields["parent_task_id"]
    if parent is not None and store.get_task(conn, parent) is None:
        raise NotFoundError(f"no parent task {parent}")
    found = store.statuses(conn, deps)
    missing = [d for d in deps if d not in found]
    if missing:
        raise NotFoundError(f"no task {missing[0]} (listed as a dependency)")
    if deps and store.reaches(conn, deps, task_id):
        raise ValidationError(f"task {task_id}: its dependencies lead back to it (a dependency cycle)")
    session = fields["session_id"]
    if session is not None:
        status = store.session_status(conn, session)
        if status is None:
            raise NotFoundError(f"no session {session}")
        if status not in OPEN_SESSION:
            raise ConflictError(f"session {session} is {status}: it takes no new tasks")
    status = rules.initial_status(found, task_id)
    row = store.insert_task(conn, status=status, now=now, dependencies_json=to_json(list(deps)), **fields)
    store.insert_audit(conn, timestamp=now, task_id=task_id, action="task_submit", result=status,
                       data={"by": fields["created_by"], "priority": fields["priority"], "dependencies": list(deps)})
    return row


def _cancel_dependents(conn: Any, store: TaskStatements, task_id: str, cause: str, now: str) -> list[str]:
    """Cancel, transitively, the blocked tasks waiting on ``task_id`` (they could never run)."""
    cancelled: list[str] = []
    work = [task_id]
    while work:
        upstream = work.pop()
        for dependent in sorted(store.blocked_dependents(conn, upstream)):  # one order on every engine
            message = f"dependency {upstream} {cause}" if upstream == task_id else f"dependency {upstream} was cancelled"
            if store.finish(conn, dependent, "blocked", "cancelled", now, error=message) is not None:
                store.insert_audit(conn, timestamp=now, task_id=dependent, action="task_cancel", result="cancelled",
                                   data={"cause": upstream, "reason": message})
                cancelled.append(dependent)
                work.append(dependent)
    return cancelled


def _after_final(conn: Any, store: TaskStatements, task_id: str, status: str, now: str) -> None:
    if status == "completed":
        for unblocked in store.unblock_dependents(conn, task_id, now):
            store.insert_audit(conn, timestamp=now, task_id=unblocked, action="task_unblock", result="pending",
                               data={"cause": task_id})
    elif status in ("failed", "cancelled"):
        _cancel_dependents(conn, store, task_id, "failed" if status == "failed" else "was cancelled", now)


def _reclaim(conn: Any, store: TaskStatements, now_dt: datetime, now: str) -> list[tuple[str, str]]:
    done = []
    for row in store.running_with_agents(conn):
        reason = rules.expiry_reason(row, now_dt)
        if reason is None:
            continue
        new = rules.retry_or_fail(int(row["retry_count"] or 0), int(row["max_retries"] or 0))
        if store.finish(conn, row["id"], "running", new, now, error=reason, retry=new == "pending") is None:
            continue
        agent_id = row["agent_id"]
        if agent_id is not None:
            store.terminate_agent(conn, agent_id, "timed_out" if "max_execution" in reason else "lease_expired", now)
        store.insert_audit(conn, timestamp=now, task_id=row["id"], agent_id=agent_id, action="task_reclaim",
                           result=new, data={"reason": reason, "retry_count": int(row["retry_count"] or 0)})
        _after_final(conn, store, row["id"], new, now)
        done.append((str(row["id"]), new))
    return done


def _claim(conn: Any, store: TaskStatements, worker: str, agent_type: str | None, model: str, lease: float,
           now_dt: datetime, now: str) -> tuple[Any, str] | None:
    _reclaim(conn, store, now_dt, now)
    picked = store.next_runnable(conn, agent_type)
    if picked is None:
        return None
    row = store.start(conn, picked["id"], now)
    if row is None:  # cannot happen inside BEGIN IMMEDIATE; never hand out a task without its row
        raise ConflictError(f"task {picked['id']} changed status concurrently; try again")
    agent_id = str(uuid.uuid4())
    store.insert_agent(conn, agent_id=agent_id, name=worker, specialization=row["agent_type"], task_id=row["id"],
                       model=model, now=now, lease_seconds=lease, session_id=row["session_id"])
    store.insert_audit(conn, timestamp=now, task_id=row["id"], agent_id=agent_id, action="task_claim",
                       result="running", data={"worker": worker, "lease_seconds": lease,
                                               "attempt": int(row["retry_count"] or 0) + 1})
    return row, agent_id


def _held(conn: Any, store: TaskStatements, task_id: str, agent_id: str | None, action: str) -> tuple[Task, Any]:
    store.lock_task(conn, task_id)
    task = _task(conn, store, task_id)
    holder = store.current_agent(conn, task_id)
    rules.check_holder(task, None if holder is None else holder["id"], agent_id, action)
    return task, holder


def _heartbeat(conn: Any, store: TaskStatements, task_id: str, agent_id: str | None, lease: float | None,
               now: str) -> tuple[Any, float, str]:
    _, holder = _held(conn, store, task_id, agent_id, "heartbeat")
    if holder is not None and lease is not None:
        store.set_lease(conn, holder["id"], lease)
    store.touch(conn, task_id, now)
    usage = rules.agent_from_row(holder).resource_usage if holder is not None else {}
    kept = lease if lease is not None else float(usage.get("lease_seconds", rules.DEFAULT_LEASE_SECONDS))
    return store.get_task(conn, task_id), kept, "" if holder is None else str(holder["id"])


def _finish(conn: Any, store: TaskStatements, task_id: str, agent_id: str | None, outcome: str, now: str,
            result_json: str | None, error: str | None, retry: bool) -> Any:
    """complete (outcome completed) or fail (outcome failed: retried while retries are left)."""
    task, holder = _held(conn, store, task_id, agent_id, "complete" if outcome == "completed" else "fail")
    new = outcome if outcome == "completed" or not retry else rules.retry_or_fail(task.retry_count, task.max_retries)
    row = store.finish(conn, task_id, "running", new, now, result_json=result_json, error=error,
                       retry=new == "pending")
    holder_id = None if holder is None else holder["id"]
    if holder_id is not None:
        store.terminate_agent(conn, holder_id, outcome, now)
    data: dict[str, Any] = {"attempt": task.retry_count + 1}
    if error is not None:
        data["error"] = error
    store.insert_audit(conn, timestamp=now, task_id=task_id, agent_id=holder_id,
                       action="task_complete" if outcome == "completed" else "task_fail", result=new, data=data)
    _after_final(conn, store, task_id, new, now)
    return row


def _cancel(conn: Any, store: TaskStatements, task_id: str, reason: str | None, by: str | None,
            now: str) -> tuple[Any, list[str]]:
    store.lock_task(conn, task_id)
    task = _task(conn, store, task_id)
    if task.status not in rules.CANCELLABLE:
        raise ConflictError(f"task {task_id} is {task.status}: cannot cancel (only blocked, pending or running tasks)")
    holder = store.current_agent(conn, task_id) if task.status == "running" else None
    row = store.finish(conn, task_id, task.status, "cancelled", now, error=reason or "cancelled")
    if holder is not None:
        store.terminate_agent(conn, holder["id"], "cancelled", now)
    store.insert_audit(conn, timestamp=now, task_id=task_id, agent_id=None if holder is None else holder["id"],
                       action="task_cancel", result="cancelled", data={"by": by, "reason": reason, "from": task.status})
    return row, _cancel_dependents(conn, store, task_id, "was cancelled", now)


def _save_checkpoint(conn: Any, store: TaskStatements, task_id: str, agent_id: str | None, iteration: int | None, state_json: str,
                     now: str) -> Any:
    task, holder = _held(conn, store, task_id, agent_id, "save a checkpoint")
    latest = store.latest_checkpoint(conn, task_id)
    last = int(latest["iteration"]) if latest is not None else 0
    if iteration is None:
        iteration = last + 1
    elif store.checkpoint(conn, task_id, iteration) is not None:
        raise ConflictError(f"task {task_id} already has checkpoint iteration {iteration} (latest: {last})")
    row = store.insert_checkpoint(conn, task_id, iteration, state_json, now, task.session_id)
    store.insert_audit(conn, timestamp=now, task_id=task_id, agent_id=None if holder is None else holder["id"],
                       action="checkpoint_save", result=str(iteration), data={"iteration": iteration})
    return row


def _load_checkpoint(conn: Any, store: TaskStatements, task_id: str, iteration: int | None) -> Any | None:
    _task(conn, store, task_id)
    if iteration is None:
        return store.latest_checkpoint(conn, task_id)
    row = store.checkpoint(conn, task_id, iteration)
    if row is None:
        raise NotFoundError(f"task {task_id} has no checkpoint iteration {iteration}")
    return row


def _get_agent(conn: Any, store: TaskStatements, agent_id: str) -> Any:
    row = store.get_agent(conn, agent_id)
    if row is None:
        raise NotFoundError(f"no agent {agent_id}")
    return row


class TaskService:
    """Tasks, the agents that run them and their checkpoints, over an agent store of either
    engine (:func:`indexer.storage.engines.open_agent_database`).

    ``clock`` (a function returning an aware datetime) is the time every timestamp and lease
    is computed from: the system clock unless a test gives its own.
    """

    def __init__(self, db: AgentDatabase, *, clock: Clock | None = None) -> None:
        self.db = db
        self.store = engines.task_statements(db)
        self._clock = clock or _system_clock

    def _now(self) -> tuple[datetime, str]:
        moment = self._clock()
        return moment, format_ts(moment)

    async def submit(self, prompt: str, *, agent_type: str = "general", input_data: Any = None,
                     priority: int = rules.DEFAULT_PRIORITY, parent_task_id: str | None = None,
                     dependencies: list[str] | tuple[str, ...] | None = None, session_id: str | None = None,
                     max_retries: int = rules.DEFAULT_MAX_RETRIES,
                     max_execution_timeout_seconds: int = rules.DEFAULT_TIMEOUT_SECONDS,
                     created_by: str | None = None, task_id: str | None = None) -> Task:
        """A new task: pending, or blocked until every dependency is completed. Unknown
        parent, dependency or session ids are NotFoundError; a cycle or a bad value a
        ValidationError; a dependency that failed or was cancelled a ConflictError. Nothing
        is written when any check fails."""
        task_id = str(uuid.uuid4()) if task_id is None else check_text(task_id, "task id")
        if input_data is None:
            input_data = {}
        if not isinstance(input_data, dict):
            raise ValidationError(f"input must be a JSON object, got {type(input_data).__name__}")
        fields = {
            "task_id": task_id, "prompt": rules.check_prompt(prompt), "agent_type": check_text(agent_type, "agent type"),
            "priority": rules.check_priority(priority), "input_json": to_json(input_data, "input"),
            "max_retries": rules.check_max_retries(max_retries),
            "timeout_seconds": rules.check_timeout(max_execution_timeout_seconds),
            "created_by": None if created_by is None else check_text(created_by, "created_by"),
            "parent_task_id": None if parent_task_id is None else check_text(parent_task_id, "parent task id"),
            "session_id": None if session_id is None else check_text(session_id, "session id"),
        }
        if parent_task_id == task_id:
            raise ValidationError(f"task {task_id} cannot be its own parent")
        deps = rules.check_dependencies(dependencies, task_id)
        _, now = self._now()
        return rules.task_from_row(await self.db.run(_submit, self.store, fields, deps, now, inline=True))

    async def claim(self, worker: str, *, agent_type: str | None = None, lease_seconds: float = rules.DEFAULT_LEASE_SECONDS,
                    model: str = "unspecified") -> Claim | None:
        """Reclaim expired leases, then take the next runnable task (of ``agent_type`` if
        given) for ``worker``: running, with a new ``agents`` row (linked to the task and its
        session) holding it for ``lease_seconds``. None when nothing is runnable."""
        check_text(worker, "worker")
        check_text(model, "model")
        if agent_type is not None:
            check_text(agent_type, "agent type")
        lease = rules.check_lease(lease_seconds)
        now_dt, now = self._now()
        got = await self.db.run(_claim, self.store, worker, agent_type, model, lease, now_dt, now, inline=True)
        if got is None:
            return None
        task = rules.task_from_row(got[0])
        deadline = rules.lease_deadline(now, lease, now, task.max_execution_timeout_seconds)
        return Claim(task, got[1], lease, format_ts(deadline))

    async def heartbeat(self, task_id: str, agent_id: str | None = None, *, lease_seconds: float | None = None) -> Claim:
        """Extend a running task's lease from now (by ``lease_seconds``, or the claim's lease).
        ConflictError when the task is no longer running or (given ``agent_id``) was
        reclaimed from that agent: the worker should stop."""
        check_text(task_id, "task id")
        if agent_id is not None:
            check_text(agent_id, "agent id")
        lease = None if lease_seconds is None else rules.check_lease(lease_seconds)
        _, now = self._now()
        row, kept, holder = await self.db.run(_heartbeat, self.store, task_id, agent_id, lease, now, inline=True)
        task = rules.task_from_row(row)
        deadline = rules.lease_deadline(now, kept, task.started_at, task.max_execution_timeout_seconds)
        return Claim(task, holder, kept, format_ts(deadline))

    async def complete(self, task_id: str, result: Any = None, agent_id: str | None = None) -> Task:
        """running → completed with ``result`` (any JSON value); dependents whose
        dependencies are now all completed become pending."""
        check_text(task_id, "task id")
        result_json = to_json(result, "result")
        _, now = self._now()
        return rules.task_from_row(await self.db.run(_finish, self.store, task_id, agent_id, "completed", now,
                                                     result_json, None, False, inline=True))

    async def fail(self, task_id: str, error: str, agent_id: str | None = None, *, retry: bool = True) -> Task:
        """Record a failed attempt: back to pending with ``retry_count + 1`` while retries are
        left (and ``retry``), else failed for good, which cancels the blocked dependents."""
        check_text(task_id, "task id")
        if not isinstance(error, str) or not error.strip():
            raise ValidationError("error must be a non-empty message")
        _, now = self._now()
        return rules.task_from_row(await self.db.run(_finish, self.store, task_id, agent_id, "failed", now, None, error,
                                                     retry, inline=True))

    async def cancel(self, task_id: str, reason: str | None = None, *, by: str | None = None) -> tuple[Task, list[str]]:
        """Cancel a blocked, pending or running task (its worker learns it at its next
        heartbeat); its blocked dependents are cancelled too, transitively. Returns the task
        and the ids of the dependents cancelled with it."""
        check_text(task_id, "task id")
        _, now = self._now()
        row, dependents = await self.db.run(_cancel, self.store, task_id, reason, by, now, inline=True)
        return rules.task_from_row(row), dependents

    async def reclaim(self) -> list[tuple[str, str]]:
        """Reclaim every running task whose lease or execution timeout has run out: (task id,
        new status: pending or failed) for each."""
        now_dt, now = self._now()
        return await self.db.run(_reclaim, self.store, now_dt, now)

    async def get_task(self, task_id: str) -> Task:
        check_text(task_id, "task id")
        return await self.db.run(_task, self.store, task_id, write=False, inline=True)

    async def list_tasks(self, *, session_id: str | None = None, status: str | None = None,
                         agent_type: str | None = None, parent_task_id: str | None = None,
                         limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> tuple[list[Task], str | None]:
        """Tasks matching every filter, newest first; (page, next cursor or None)."""
        filters = {k: check_text(v, k) for k, v in (("session_id", session_id), ("agent_type", agent_type),
                                                    ("parent_task_id", parent_task_id)) if v is not None}
        if status is not None:
            filters["status"] = rules.check_status(status)
        validate_limit(limit)
        rows = await self.db.run(self.store.page, filters, keyset_after(cursor), limit + 1, write=False)
        return keyset_page(rows, limit, rules.task_from_row, lambda t: [t.submitted_at, t.id])

    async def counts(self) -> dict[str, int]:
        """How many tasks are in each status."""
        return await self.db.run(self.store.status_counts, write=False)

    async def get_agent(self, agent_id: str) -> Agent:
        check_text(agent_id, "agent id")
        return rules.agent_from_row(await self.db.run(_get_agent, self.store, agent_id, write=False, inline=True))

    async def list_agents(self, *, session_id: str | None = None, task_id: str | None = None,
                          state: str | None = None, limit: int = DEFAULT_LIMIT,
                          cursor: str | None = None) -> tuple[list[Agent], str | None]:
        """Agents (one per claim) matching every filter, newest first; (page, next cursor)."""
        filters = {k: check_text(v, k) for k, v in (("session_id", session_id), ("task_id", task_id)) if v is not None}
        if state is not None:
            filters["state"] = rules.check_agent_state(state)
        validate_limit(limit)
        rows = await self.db.run(self.store.agents_page, filters, keyset_after(cursor), limit + 1, write=False)
        return keyset_page(rows, limit, rules.agent_from_row, lambda a: [a.spawned_at, a.id])

    async def session_tasks(self, session_id: str, limit: int = DEFAULT_LIMIT) -> list[Task]:
        """A session's tasks, newest first (idx_tasks_session)."""
        return (await self.list_tasks(session_id=session_id, limit=limit))[0]

    async def session_agents(self, session_id: str, limit: int = DEFAULT_LIMIT) -> list[Agent]:
        """The agents that ran a session's tasks, newest first (idx_agents_session)."""
        return (await self.list_agents(session_id=session_id, limit=limit))[0]

    async def audit(self, task_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """A task's audit rows, newest first."""
        check_text(task_id, "task id")
        validate_limit(limit)
        rows = await self.db.run(self.store.audit_rows, task_id, limit, write=False)
        return [dict(r) for r in rows]

    async def save_checkpoint(self, task_id: str, state: Any, agent_id: str | None = None, *,
                              iteration: int | None = None) -> Checkpoint:
        """Store ``state`` (any JSON value) as the running task's next iteration (or the one
        given, which must be new)."""
        check_text(task_id, "task id")
        if iteration is not None:
            rules._int_in(iteration, "iteration", 0, 2**62)
        state_json = to_json(state, "checkpoint state")
        _, now = self._now()
        row = await self.db.run(_save_checkpoint, self.store, task_id, agent_id, iteration, state_json, now, inline=True)
        return rules.checkpoint_from_row(row)

    async def load_checkpoint(self, task_id: str, iteration: int | None = None) -> Checkpoint | None:
        """The latest checkpoint of a task (or the given iteration); None when it has none."""
        check_text(task_id, "task id")
        row = await self.db.run(_load_checkpoint, self.store, task_id, iteration, write=False, inline=True)
        return None if row is None else rules.checkpoint_from_row(row)
