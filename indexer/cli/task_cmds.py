"""``indexer task …`` and ``indexer agent …``: the task queue from the command line."""

from __future__ import annotations

from typing import Any

import click

from indexer.cli.app import AppContext, cli
from indexer.cli.common import compact, json_argument, json_object_option, run_with_db
from indexer.cli.output import emit_json


def _service(db: Any) -> Any:
    from indexer.agent.tasks import TaskService

    return TaskService(db)


def _line(t: Any) -> str:
    deps = f"  after {','.join(t.dependencies)}" if t.dependencies else ""
    return f"{t.id}  {t.status:<9} p{t.priority}  {t.agent_type}  {t.submitted_at}  {compact(t.prompt, 60)}{deps}"


def _claim_text(c: Any) -> str:
    return f"task {c.task.id} held by agent {c.agent_id} until {c.lease_expires_at}"


@cli.group()
def task() -> None:
    """Tasks: a job queue for agents (priorities, dependencies, leases, retries).

    \b
    blocked -> pending -> running -> completed | failed | cancelled; a failed attempt or an
    expired lease goes back to pending while retries are left. Workers claim, heartbeat,
    then complete or fail, passing the agent id their claim printed (--agent).
    """


@task.command("submit")
@click.argument("prompt")
@click.option("--type", "agent_type", default="general", show_default=True, help="Agent type that runs it.")
@click.option("--input", "input_data", help="Input, a JSON object ('-': stdin).")
@click.option("--priority", type=int, default=5, show_default=True, help="0 (lowest) to 10.")
@click.option("--parent", "parent", help="Parent task id.")
@click.option("--after", "after", multiple=True, help="A task id it depends on (repeat for several).")
@click.option("--session", "session_id", help="Session the task belongs to.")
@click.option("--max-retries", type=int, default=3, show_default=True, help="Retries after a failed attempt.")
@click.option("--timeout", type=int, default=3600, show_default=True, help="max_execution_timeout_seconds.")
@click.option("--by", "created_by", help="Who submits it.")
@click.option("--id", "task_id", help="Use this id (default: a new uuid4).")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@click.pass_obj
def task_submit(app: AppContext, prompt: str, agent_type: str, input_data: str | None, priority: int,
                parent: str | None, after: tuple[str, ...], session_id: str | None, max_retries: int,
                timeout: int, created_by: str | None, task_id: str | None, as_json: bool) -> None:
    """Submit a task; prints its id and status (pending, or blocked until its dependencies complete)."""
    from indexer.agent import task_rules

    task_rules.check_prompt(prompt)  # before the database file is created
    data = json_object_option(input_data, "--input")
    created = run_with_db(app, lambda db: _service(db).submit(
        prompt, agent_type=agent_type, input_data=data, priority=priority, parent_task_id=parent,
        dependencies=list(after), session_id=session_id, max_retries=max_retries,
        max_execution_timeout_seconds=timeout, created_by=created_by, task_id=task_id))
    if as_json:
        emit_json(created.as_dict())
    else:
        click.echo(f"{created.id} {created.status}")


@task.command("claim")
@click.option("--worker", required=True, help="The worker's name (recorded on its agent row).")
@click.option("--type", "agent_type", help="Only tasks of this agent type.")
@click.option("--lease", type=float, default=60.0, show_default=True, help="Seconds the claim holds without a heartbeat.")
@click.option("--model", default="unspecified", show_default=True, help="Model the agent runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the claim (task, agent_id, lease) as JSON; null if none.")
@click.pass_obj
def task_claim(app: AppContext, worker: str, agent_type: str | None, lease: float, model: str, as_json: bool) -> None:
    """Claim the next runnable task (highest priority, then oldest), after reclaiming expired leases."""
    got = run_with_db(app, lambda db: _service(db).claim(worker, agent_type=agent_type, lease_seconds=lease,
                                                         model=model), create=False)
    if as_json:
        emit_json(None if got is None else got.as_dict())
    elif got is None:
        click.echo("nothing to claim")
    else:
        click.echo(_claim_text(got))
        click.echo(f"  {compact(got.task.prompt, 100)}  input {compact(got.task.input_data, 100)}")


@task.command("heartbeat")
@click.argument("task_id")
@click.option("--agent", "agent_id", help="The agent id of the claim (refused if the task was reclaimed).")
@click.option("--lease", type=float, help="New lease length in seconds (default: the claim's).")
@click.option("--json", "as_json", is_flag=True, help="Print the lease as JSON.")
@click.pass_obj
def task_heartbeat(app: AppContext, task_id: str, agent_id: str | None, lease: float | None, as_json: bool) -> None:
    """Extend a running task's lease from now."""
    got = run_with_db(app, lambda db: _service(db).heartbeat(task_id, agent_id, lease_seconds=lease), create=False)
    if as_json:
        emit_json(got.as_dict())
    else:
        click.echo(_claim_text(got))


@task.command("complete")
@click.argument("task_id")
@click.argument("result", required=False)
@click.option("--agent", "agent_id", help="The agent id of the claim.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@click.pass_obj
def task_complete(app: AppContext, task_id: str, result: str | None, agent_id: str | None, as_json: bool) -> None:
    """Complete a running task with RESULT (JSON; '-': stdin; default null)."""
    value = None if result is None else json_argument(result, "RESULT")
    done = run_with_db(app, lambda db: _service(db).complete(task_id, value, agent_id), create=False)
    if as_json:
        emit_json(done.as_dict())
    else:
        click.echo(f"{done.id} {done.status}")


@task.command("fail")
@click.argument("task_id")
@click.argument("error")
@click.option("--agent", "agent_id", help="The agent id of the claim.")
@click.option("--no-retry", is_flag=True, help="Fail for good, whatever retries are left.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@click.pass_obj
def task_fail(app: AppContext, task_id: str, error: str, agent_id: str | None, no_retry: bool, as_json: bool) -> None:
    """Record a failed attempt: pending again while retries are left, else failed."""
    t = run_with_db(app, lambda db: _service(db).fail(task_id, error, agent_id, retry=not no_retry), create=False)
    if as_json:
        emit_json(t.as_dict())
    else:
        click.echo(f"{t.id} {t.status} (retry {t.retry_count} of {t.max_retries})")


@task.command("cancel")
@click.argument("task_id")
@click.option("--reason", help="Why (stored as the task's error message).")
@click.option("--by", help="Who cancels it.")
@click.option("--json", "as_json", is_flag=True, help="Print the task and the dependents cancelled with it.")
@click.pass_obj
def task_cancel(app: AppContext, task_id: str, reason: str | None, by: str | None, as_json: bool) -> None:
    """Cancel a blocked, pending or running task; its blocked dependents are cancelled with it."""
    t, dependents = run_with_db(app, lambda db: _service(db).cancel(task_id, reason, by=by), create=False)
    if as_json:
        emit_json({"task": t.as_dict(), "cancelled_dependents": dependents})
        return
    click.echo(f"{t.id} cancelled")
    for dependent in dependents:
        click.echo(f"{dependent} cancelled (depends on it)")


@task.command("reclaim")
@click.option("--json", "as_json", is_flag=True, help="Print [task id, new status] pairs as JSON.")
@click.pass_obj
def task_reclaim(app: AppContext, as_json: bool) -> None:
    """Reclaim running tasks whose lease or execution timeout ran out (every claim also does)."""
    done = run_with_db(app, lambda db: _service(db).reclaim(), create=False)
    if as_json:
        emit_json([list(pair) for pair in done])
        return
    for task_id, status in done:
        click.echo(f"{task_id} {status}")
    if not done:
        click.echo("nothing to reclaim")


@task.command("list")
@click.option("--session", "session_id", help="Only this session's tasks.")
@click.option("--status", help="Only this status.")
@click.option("--type", "agent_type", help="Only this agent type.")
@click.option("--parent", help="Only children of this task.")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size (1-1000).")
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@click.option("--all", "all_pages", is_flag=True, help="Every page.")
@click.option("--json", "as_json", is_flag=True, help='{"items": [...], "next_cursor": ...}.')
@click.pass_obj
def task_list(app: AppContext, session_id: str | None, status: str | None, agent_type: str | None,
              parent: str | None, limit: int, cursor: str | None, all_pages: bool, as_json: bool) -> None:
    """Tasks, newest first."""
    async def pages(db: Any) -> tuple[list[Any], str | None]:
        svc = _service(db)
        kwargs = {"session_id": session_id, "status": status, "agent_type": agent_type, "parent_task_id": parent,
                  "limit": limit}
        items, nxt = await svc.list_tasks(cursor=cursor, **kwargs)
        while all_pages and nxt:
            more, nxt = await svc.list_tasks(cursor=nxt, **kwargs)
            items.extend(more)
        return items, nxt

    items, nxt = run_with_db(app, pages, create=False)
    if as_json:
        emit_json({"items": [t.as_dict() for t in items], "next_cursor": nxt})
        return
    for t in items:
        click.echo(_line(t))
    if not items:
        click.echo("no tasks")
    if nxt:
        click.echo(f"more: --cursor {nxt}")


@task.command("show")
@click.argument("task_id")
@click.option("--audit", "audit_rows", type=int, default=10, show_default=True, help="Show the last N audit rows.")
@click.option("--json", "as_json", is_flag=True, help="The task, its agents, latest checkpoint and audit rows.")
@click.pass_obj
def task_show(app: AppContext, task_id: str, audit_rows: int, as_json: bool) -> None:
    """Show a task: status, times, input, result, its agents, latest checkpoint and audit."""
    async def gather(db: Any) -> dict[str, Any]:
        svc = _service(db)
        t = await svc.get_task(task_id)
        agents, _ = await svc.list_agents(task_id=task_id)
        checkpoint = await svc.load_checkpoint(task_id)
        audit = await svc.audit(task_id, max(audit_rows, 1))
        return {"task": t.as_dict(), "agents": [a.as_dict() for a in agents],
                "checkpoint": None if checkpoint is None else checkpoint.as_dict(), "audit": audit[:audit_rows]}

    data = run_with_db(app, gather, create=False)
    if as_json:
        emit_json(data)
        return
    t = data["task"]
    click.echo(f"task {t['id']}  {t['status']}  priority {t['priority']}  type {t['agent_type']}")
    click.echo(f"  prompt {compact(t['prompt'], 100)}")
    click.echo(f"  input {compact(t['input_data'], 100)}")
    for name in ("result_data", "error_message", "parent_task_id", "session_id", "created_by"):
        if t[name] is not None:
            click.echo(f"  {name.replace('_data', '').replace('_', ' ')} {compact(t[name], 100)}")
    if t["dependencies"]:
        click.echo(f"  after {', '.join(t['dependencies'])}")
    click.echo(f"  retries {t['retry_count']} of {t['max_retries']}, timeout {t['max_execution_timeout_seconds']} s")
    click.echo(f"  submitted {t['submitted_at']}, started {t['started_at'] or '-'}, "
               f"completed {t['completed_at'] or '-'}, updated {t['last_updated_at']}")
    for a in data["agents"]:
        click.echo(f"  agent {a['id']}  {a['name']}  {a['state']}  {compact(a['resource_usage'])}")
    if data["checkpoint"]:
        c = data["checkpoint"]
        click.echo(f"  checkpoint {c['iteration']} at {c['created_at']}: {compact(c['state'], 100)}")
    for row in data["audit"]:
        click.echo(f"  {row['timestamp']}  {row['action_type']:<14} {row['result'] or ''}")


@cli.group()
def agent() -> None:
    """Agents: one row per claim, linked to its task and session."""


@agent.command("list")
@click.option("--session", "session_id", help="Only agents of this session's tasks.")
@click.option("--task", "task_id", help="Only agents that held this task.")
@click.option("--state", help="busy or terminated.")
@click.option("--limit", type=int, default=50, show_default=True, help="Page size (1-1000).")
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@click.option("--json", "as_json", is_flag=True, help='{"items": [...], "next_cursor": ...}.')
@click.pass_obj
def agent_list(app: AppContext, session_id: str | None, task_id: str | None, state: str | None, limit: int,
               cursor: str | None, as_json: bool) -> None:
    """Agents, newest first."""
    items, nxt = run_with_db(app, lambda db: _service(db).list_agents(
        session_id=session_id, task_id=task_id, state=state, limit=limit, cursor=cursor), create=False)
    if as_json:
        emit_json({"items": [a.as_dict() for a in items], "next_cursor": nxt})
        return
    for a in items:
        click.echo(f"{a.id}  {a.state:<10} {a.name}  task {a.task_id}  {a.spawned_at}  {compact(a.resource_usage)}")
    if not items:
        click.echo("no agents")
    if nxt:
        click.echo(f"more: --cursor {nxt}")


@agent.command("show")
@click.argument("agent_id")
@click.option("--json", "as_json", is_flag=True, help="Print the agent as JSON.")
@click.pass_obj
def agent_show(app: AppContext, agent_id: str, as_json: bool) -> None:
    """Show an agent: its task, session, state, times and lease."""
    a = run_with_db(app, lambda db: _service(db).get_agent(agent_id), create=False)
    if as_json:
        emit_json(a.as_dict())
        return
    click.echo(f"agent {a.id}  {a.name}  {a.state}")
    click.echo(f"  task {a.task_id}, session {a.session_id or '-'}, type {a.specialization}, model {a.model}")
    click.echo(f"  spawned {a.spawned_at}, terminated {a.terminated_at or '-'}")
    click.echo(f"  {compact(a.resource_usage)}")
