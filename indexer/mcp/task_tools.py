"""The task tools, for an agent working a queue: task_claim, task_heartbeat, task_complete,
task_fail (:class:`~indexer.agent.tasks.TaskService` on the database directly). Submitting and
cancelling are the operator's (``indexer task …``)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from indexer.mcp.common import WRITE, ServerState, respond, tool_errors

Id = Annotated[str, Field(min_length=1, max_length=200)]
Lease = Annotated[float, Field(gt=0, le=86400, description="seconds")]


class TaskOut(BaseModel):
    id: str
    prompt: str
    agent_type: str
    priority: int
    input_data: Any
    retry_count: int
    max_retries: int
    session_id: str | None
    parent_task_id: str | None


class ClaimOut(BaseModel):
    task: TaskOut | None = Field(description="null: nothing to run now")
    agent_id: str | None = None
    lease_expires_at: str | None = None
    checkpoint: Any = Field(None, description="latest saved state of an earlier attempt")


class LeaseOut(BaseModel):
    lease_expires_at: str


class Outcome(BaseModel):
    id: str
    status: str
    retry_count: int


def _outcome(t: Any) -> Outcome:
    return Outcome(id=t.id, status=t.status, retry_count=t.retry_count)


def _task(t: Any) -> TaskOut:
    return TaskOut(**{name: value for name, value in t.as_dict().items() if name in TaskOut.model_fields})


def register(server: MCPServer, app: ServerState, names: set[str]) -> None:
    from indexer.agent.tasks import TaskService

    async def service() -> TaskService:
        return TaskService(await app.database())

    if "task_claim" in names:
        @server.tool(annotations=WRITE)
        async def task_claim(worker: Id, agent_type: Id | None = None, lease_seconds: Lease = 300) -> Annotated[
                CallToolResult, ClaimOut]:
            """Take the next runnable task. Heartbeat before the lease ends; finish with task_complete or task_fail."""
            with tool_errors():
                svc = await service()
                got = await svc.claim(worker, agent_type=agent_type, lease_seconds=lease_seconds)
                if got is None:
                    return respond(ClaimOut(task=None, checkpoint=None))
                saved = await svc.load_checkpoint(got.task.id)
                return respond(ClaimOut(task=_task(got.task), agent_id=got.agent_id,
                                        lease_expires_at=got.lease_expires_at,
                                        checkpoint=None if saved is None else saved.state))

    if "task_heartbeat" in names:
        @server.tool(annotations=WRITE)
        async def task_heartbeat(task_id: Id, agent_id: Id, lease_seconds: Lease | None = None,
                                 checkpoint: Annotated[Any, Field(description="progress to save")] = None) -> Annotated[
                CallToolResult, LeaseOut]:
            """Extend the lease (and save progress). An error means the task is no longer yours: stop."""
            with tool_errors():
                svc = await service()
                if checkpoint is not None:
                    await svc.save_checkpoint(task_id, checkpoint, agent_id)
                got = await svc.heartbeat(task_id, agent_id, lease_seconds=lease_seconds)
                return respond(LeaseOut(lease_expires_at=got.lease_expires_at))

    if "task_complete" in names:
        @server.tool(annotations=WRITE)
        async def task_complete(task_id: Id, agent_id: Id, result: Any = None) -> Annotated[CallToolResult, Outcome]:
            """Finish a claimed task with its result (any JSON); unblocks its dependents."""
            with tool_errors():
                return respond(_outcome(await (await service()).complete(task_id, result, agent_id)))

    if "task_fail" in names:
        @server.tool(annotations=WRITE)
        async def task_fail(task_id: Id, agent_id: Id, error: Annotated[str, Field(min_length=1, max_length=4000)],
                            retry: bool = True) -> Annotated[CallToolResult, Outcome]:
            """Report a failed attempt; retried while retries are left (retry=false: fail for good)."""
            with tool_errors():
                return respond(_outcome(await (await service()).fail(task_id, error, agent_id, retry=retry)))
