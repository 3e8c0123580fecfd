"""A team as it runs: two members ("two machines" on one host), each with an INDEXER_HOME,
a notes folder and a local SQLite index of their own, and ONE agent store: the suite's
PostgreSQL, named by INDEXER_AGENT_DB for Alice and by `agent_db` in Bob's config.toml. Real
processes throughout: an `indexer daemon` per member, `indexer mcp` stdio servers driven by the
SDK's client (Alice's started from what `indexer mcp --print-config` prints for her), the CLI as
each member's shell runs it, and a server killed with SIGKILL while it holds a task.

What it proves, in order: each member's search answers from their own notes only while
`status` names the shared store; what one member writes (memories and their versions, tasks
with a dependency, a session's events) the other reads and works; two members' processes
writing one key, appending to one session and claiming from one queue at once lose nothing
(versions 1..N, seq 1..N, one audit row per write, each task claimed once); a task whose
holder was killed is reclaimed after its lease and finished by the other member; every daemon
stops cleanly on SIGTERM; nothing was written to a local file instead of the server, and no
path named `postgresql:` appeared (the old bug)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from conftest import StoreRows, copy_tldr
from daemon_harness import DaemonProcess, wait_until
from indexer.storage.sqlite import driver
from mcp_calls import call

pytestmark = [pytest.mark.process, pytest.mark.slow, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "hash:64"
WRITES_PER_SERVER = 20  # memory versions and session events per MCP server in the races
CLI_WRITES = 2  # memory versions per member's CLI in the same race
QUEUE = 40  # tasks in the queue both members' servers empty at once
LEASE = 2.0  # seconds: the lease of the task whose holder is killed


@dataclass(frozen=True)
class Member:
    """One member's machine: a home, notes, a working directory and what their shell sets."""

    name: str
    home: Path
    notes: Path
    cwd: Path
    shell: dict[str, str]  # the member's own variables (INDEXER_HOME, maybe INDEXER_AGENT_DB)

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.shell, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def cli(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "indexer", *args], cwd=self.cwd, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        assert (proc.returncode == 0) == ok, f"{self.name}: indexer {' '.join(args)} exited {proc.returncode}\n" \
                                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    async def acli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.cli, *args)

    def printed_config(self) -> dict[str, Any]:
        """The member's `indexer mcp --print-config` entry (command, args, env), what an agent
        host (Claude Code's .mcp.json, Cursor) is given."""
        return dict(json.loads(self.cli("mcp", "--print-config").stdout)["mcpServers"]["indexer"])


class RawServer:
    """An `indexer mcp` stdio server spoken to line by line (JSON-RPC), so that it can be
    killed at any moment without an SDK client to unwind."""

    def __init__(self, member: Member, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "indexer", "mcp", *args], cwd=member.cwd, env=member.env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.next_id = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "team-e2e", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        assert self.proc.stdout is not None
        while True:  # skip notifications (logging) until our answer
            line = self.proc.stdout.readline()
            assert line, f"the server exited {self.proc.poll()}: {self.proc.stderr.read() if self.proc.stderr else ''}"
            answer = json.loads(line)
            if answer.get("id") == self.next_id:
                assert "error" not in answer, answer
                return answer["result"]

    def tool(self, name: str, **args: Any) -> Any:
        result = self.request("tools/call", {"name": name, "arguments": args})
        assert not result.get("isError"), result
        return result["structuredContent"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


AGENT_TABLES = ("memory_entries", "audit", "sessions", "session_events", "tasks", "agents", "checkpoints")


def local_agent_rows(db: Path) -> dict[str, int]:
    """The rows of the agent tables in a member's local notes file (its migrations made them)."""
    conn = driver.connect(db, readonly=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in AGENT_TABLES if t in tables}
    finally:
        conn.close()


@pytest.fixture
def team(tmp_path: Path, pg_dsn: str) -> tuple[Member, Member]:
    members = []
    for name, pages in (("alice", ("tar", "git-commit", "black")), ("bob", ("curl", "bun", "git-config"))):
        home, cwd = tmp_path / name / "home", tmp_path / name / "cwd"
        home.mkdir(parents=True)
        cwd.mkdir()
        notes = copy_tldr(tmp_path / name / "notes", pages)
        (notes / f"{name}-only.md").write_text(f"# {name.title()}'s plan\n\nThe word {name}zeppelin is in {name}'s notes "
                                               "only.\n")
        config = f'model = "{MODEL}"\n'
        shell = {"INDEXER_HOME": str(home)}
        if name == "alice":  # Alice names the team's store in her shell ...
            shell["INDEXER_AGENT_DB"] = pg_dsn
        else:  # ... Bob in his config file
            config += f'agent_db = "{pg_dsn}"\n'
        (home / "config.toml").write_text(config)
        members.append(Member(name, home, notes.resolve(), cwd, shell))
    return members[0], members[1]


async def test_two_members_share_one_postgresql_and_lose_nothing(team: tuple[Member, Member], pg_dsn: str,
                                                                 tmp_path: Path) -> None:
    alice, bob = team
    rows = StoreRows(pg_dsn)
    daemons = {m.name: DaemonProcess(m.home, [m.notes], model=MODEL,
                                     env={k: v for k, v in m.shell.items() if k != "INDEXER_HOME"}) for m in team}
    victim: RawServer | None = None
    try:
        for d in daemons.values():
            d.ready(120)
        for m in team:
            daemons[m.name].settle(m.notes, timeout=60)
        own_notes(alice, bob, daemons, rows)

        # Alice's MCP server as her agent host starts it: from what `--print-config` prints
        printed = alice.printed_config()
        await collaborate(alice, bob, printed, rows, {name: d.proc.pid for name, d in daemons.items()})
        await races(alice, bob, printed, pg_dsn, rows)
        victim = RawServer(bob, "--tools", "tasks", "--by", "bob-2")
        await killed_holder(alice, bob, victim, printed, rows)

        for m in team:  # the daemons stop cleanly, as systemd stops them
            assert daemons[m.name].stop() == 0, daemons[m.name].log()[-3000:]
            assert "daemon: not running" in m.cli("status").stdout
    finally:
        if victim is not None:
            victim.kill()
        for d in daemons.values():
            d.close()

    # the same store from both sides, and nothing of it in the members' local files
    seen = [m.json("status")["agent_store"] for m in team]
    assert seen[0] == seen[1] and seen[0]["engine"] == "postgresql"
    expected_tasks = 2 + QUEUE + 1
    assert seen[0]["tasks"] == expected_tasks and seen[0]["memory_keys"] == 2
    for m in team:
        assert local_agent_rows(m.home / "indexer.db") == dict.fromkeys(AGENT_TABLES, 0)
        assert sorted(p.name for p in m.cwd.iterdir()) == []
    strays = [p for p in tmp_path.rglob("*") if p.name.startswith(("postgresql:", "postgres:"))]
    assert strays == [], strays
    assert not Path("postgresql:").exists()


def from_printed(entry: dict[str, Any], cwd: Path, *extra: str) -> StdioServerParameters:
    """The server an agent host starts from the printed entry, in the member's project folder."""
    return StdioServerParameters(command=entry["command"], args=[*entry["args"], *extra], env=entry.get("env"), cwd=cwd)


def bob_stdio(bob: Member, *extra: str) -> StdioServerParameters:
    """Bob's server with only his home in its environment: the config file names the store."""
    return StdioServerParameters(command=sys.executable, args=["-m", "indexer", "mcp", *extra],
                                 env={**bob.shell, "PYTHONPATH": str(REPO_ROOT)}, cwd=bob.cwd)


# --- each member's notes, the one store -------------------------------------------------------------

def own_notes(alice: Member, bob: Member, daemons: dict[str, DaemonProcess], rows: StoreRows) -> None:
    version = rows("SHOW server_version")[0]["server_version"]
    for me, other in ((alice, bob), (bob, alice)):
        mine = me.json("search", f"{me.name}zeppelin", "--mode", "keyword")
        assert [h["path"] for h in mine["results"]] == [str(me.notes / f"{me.name}-only.md")]
        assert mine["served_by"]["daemon_pid"] == daemons[me.name].proc.pid  # answered by my own daemon
        theirs = me.json("search", f"{other.name}zeppelin", "--mode", "keyword")
        assert theirs["results"] == []
        paths = {h["path"] for h in me.json("search", "command line tool", "-k", "25")["results"]}
        assert paths and all(p.startswith(str(me.notes)) for p in paths), paths
        status = me.cli("status").stdout
        first = status.splitlines()[0]
        assert first.startswith(f"agent store: postgresql {version} at postgresql://"), status
        assert f"database: {me.home / 'indexer.db'}" in status
        assert "documents: 4 total, 4 synced" in status
        assert f"daemon: pid {daemons[me.name].proc.pid}, " in status


# --- what one writes, the other reads and works -------------------------------------------------------

async def collaborate(alice: Member, bob: Member, printed: dict[str, Any], rows: StoreRows,
                      daemon_pids: dict[str, int]) -> None:
    assert printed["env"].get("INDEXER_AGENT_DB") == alice.shell["INDEXER_AGENT_DB"], printed
    async with Client(from_printed(printed, alice.cwd, "--by", "alice")) as a:
        for version, value in enumerate(({"tabs": False}, {"tabs": True, "width": 100}), start=1):
            written = await call(a, "memory_write", namespace="project:team", key="style", value=value)
            assert written["entry"]["version"] == version
        # one server, two places: the docs tools ask Alice's daemon, the agent tools the team's server
        found = await call(a, "search", query="alicezeppelin", mode="keyword")
        assert found["served_by"] == "daemon" and found["daemon_pid"] == daemon_pids["alice"]
        assert [h["path"] for h in found["results"]] == [str(alice.notes / "alice-only.md")]
        assert (await call(a, "search", query="bobzeppelin", mode="keyword"))["results"] == []
        session = await call(a, "session_create", app_name="review", user_id="alice", state={"phase": "spec"})
        sid = session["id"]
        for step in ("opened", "asked bob"):
            await call(a, "session_append", session_id=sid, event={"type": "note", "by": "alice", "text": step})
    # tasks from Alice's shell: the review needs the spec first, though it has the higher priority
    spec = alice.json("task", "submit", "write the spec", "--session", sid, "--priority", "1", "--by", "alice")
    review = alice.json("task", "submit", "review the spec", "--after", spec["id"], "--priority", "9",
                        "--session", sid, "--by", "alice")
    assert (spec["status"], review["status"]) == ("pending", "blocked")

    history = bob.json("memory", "history", "project:team", "style")
    assert [(v["version"], v["value"]) for v in history] == [(1, {"tabs": False}), (2, {"tabs": True, "width": 100})]
    async with Client(bob_stdio(bob, "--by", "bob")) as b:
        indexed = await call(b, "index_status")
        assert indexed["daemon"]["pid"] == daemon_pids["bob"] and indexed["documents"]["synced"] == 4
        got = await call(b, "memory_get", namespace="project:team", key="style", history=True)
        assert (got["version"], got["value"], got["versions_total"]) == (2, {"tabs": True, "width": 100}, 2)
        assert [v["updated_by"] for v in got["versions"]] == ["alice", "alice"]
        first = await call(b, "task_claim", worker="bob")
        assert first["task"]["id"] == spec["id"], first  # not the blocked review
        assert (await call(b, "task_claim", worker="bob"))["task"] is None  # the review waits for the spec
        await call(b, "task_complete", task_id=spec["id"], agent_id=first["agent_id"], result={"pages": 3})
        second = await call(b, "task_claim", worker="bob")
        assert second["task"]["id"] == review["id"] and second["task"]["session_id"] == sid
        await call(b, "task_complete", task_id=review["id"], agent_id=second["agent_id"], result={"approved": True})
        await call(b, "session_append", session_id=sid, event={"type": "note", "by": "bob", "text": "reviewed"},
                   state_delta={"phase": "approved"})
    bob.cli("session", "append", sid, '{"type": "note", "by": "bob", "text": "from my shell"}')

    async with Client(from_printed(printed, alice.cwd)) as a:
        seen = await call(a, "session_get", session_id=sid, events=50)
        assert seen["event_count"] == 4 and seen["first_seq"] == 1 and seen["state"] == {"phase": "approved"}
        assert [(e["by"], e["text"]) for e in seen["events"]] == [
            ("alice", "opened"), ("alice", "asked bob"), ("bob", "reviewed"), ("bob", "from my shell")]
    events = alice.json("session", "events", sid, "--all")
    assert [e["seq"] for e in events["items"]] == [1, 2, 3, 4]
    done = alice.json("task", "show", review["id"])
    assert (done["task"]["status"], done["task"]["result_data"]) == ("completed", {"approved": True})
    assert [a["name"] for a in done["agents"]] == ["bob"]
    listed = alice.json("task", "list", "--session", sid)["items"]
    assert {t["id"]: t["status"] for t in listed} == {spec["id"]: "completed", review["id"]: "completed"}
    assert rows("SELECT count(*) AS n FROM audit WHERE memory_namespace = 'project:team'") == [{"n": 2}]


# --- two members' processes at once --------------------------------------------------------------------

async def races(alice: Member, bob: Member, printed: dict[str, Any], dsn: str, rows: StoreRows) -> None:
    from indexer.agent.tasks import TaskService
    from indexer.storage.engines import open_agent_database

    sid = alice.json("session", "create", "race", "alice")["id"]
    alice.cli("memory", "add", "project:team", "log", '{"w": "seed", "i": 0}', "--by", "alice")
    async with open_agent_database(dsn) as db:  # a third client fills the queue
        service = TaskService(db)
        queued = [(await service.submit(f"batch {i}", agent_type="batch", created_by="ops")).id for i in range(QUEUE)]

    async with Client(from_printed(printed, alice.cwd, "--by", "alice-mcp")) as a, Client(bob_stdio(bob, "--by", "bob-mcp")) as b:
        async def writes(client: Client, tag: str) -> list[int]:
            versions = []
            for i in range(WRITES_PER_SERVER):
                written = await call(client, "memory_write", namespace="project:team", key="log", value={"w": tag, "i": i})
                versions.append(written["entry"]["version"])
                await call(client, "session_append", session_id=sid, event={"type": "tick", "w": tag, "i": i})
            return versions

        async def shell_writes(member: Member) -> None:
            for i in range(CLI_WRITES):
                await member.acli("memory", "update", "project:team", "log", json.dumps({"w": member.name, "i": i}),
                                  "--by", member.name)

        async def worker(client: Client, name: str) -> list[str]:
            taken = []
            while (got := await call(client, "task_claim", worker=name, agent_type="batch", lease_seconds=60))["task"]:
                taken.append(got["task"]["id"])
                await call(client, "task_complete", task_id=got["task"]["id"], agent_id=got["agent_id"],
                           result={"by": name})
            return taken

        await asyncio.gather(call(a, "memory_list", prefix="project:team"), call(b, "memory_list", prefix="project:team"))
        results = await asyncio.gather(writes(a, "alice-mcp"), writes(b, "bob-mcp"),
                                       shell_writes(alice), shell_writes(bob), worker(a, "alice"), worker(b, "bob"))
    total = 1 + 2 * WRITES_PER_SERVER + 2 * CLI_WRITES
    versions = bob.json("memory", "history", "project:team", "log")
    assert [v["version"] for v in versions] == list(range(1, total + 1))
    assert sorted(results[0] + results[1]) == sorted(set(results[0] + results[1]))  # no version given twice
    assert versions[0]["value"] == {"w": "seed", "i": 0}
    for tag in ("alice-mcp", "bob-mcp", "alice", "bob"):  # each writer's order kept, attributed to it
        mine = [v for v in versions if v["value"]["w"] == tag]
        assert [v["value"]["i"] for v in mine] == list(range(WRITES_PER_SERVER if tag.endswith("mcp") else CLI_WRITES))
        assert {v["updated_by"] for v in mine} == {tag}
    audited = rows("SELECT count(*) AS n FROM audit a JOIN memory_entries m ON a.memory_entry_id = m.id "
                   "WHERE m.namespace = 'project:team' AND m.key = 'log'")
    assert audited == [{"n": total}]

    events = alice.json("session", "events", sid, "--all")["items"]
    assert [e["seq"] for e in events] == list(range(1, 2 * WRITES_PER_SERVER + 1))
    for tag in ("alice-mcp", "bob-mcp"):
        assert [e["event"]["i"] for e in events if e["event"]["w"] == tag] == list(range(WRITES_PER_SERVER))

    by_alice, by_bob = results[4], results[5]
    assert sorted(by_alice + by_bob) == sorted(queued) and not set(by_alice) & set(by_bob)
    assert by_alice and by_bob, (len(by_alice), len(by_bob))  # both members' servers took part
    claims = rows("SELECT task_id, count(*) AS n FROM audit WHERE action_type = 'task_claim' AND task_id IN "
                  "(SELECT id FROM tasks WHERE agent_type = 'batch') GROUP BY task_id")
    assert len(claims) == QUEUE and {c["n"] for c in claims} == {1}
    assert rows("SELECT status, count(*) AS n FROM tasks WHERE agent_type = 'batch' GROUP BY status") == \
        [{"status": "completed", "n": QUEUE}]


# --- a holder killed -----------------------------------------------------------------------------------

async def killed_holder(alice: Member, bob: Member, victim: RawServer, printed: dict[str, Any],
                        rows: StoreRows) -> None:
    job = alice.json("task", "submit", "long job", "--type", "fragile", "--max-retries", "2", "--by", "alice")
    claimed = victim.tool("task_claim", worker="bob-2", agent_type="fragile", lease_seconds=60)
    assert claimed["task"]["id"] == job["id"]
    # progress saved, and the lease cut to LEASE seconds from now (however slow the claim was)
    beat = victim.tool("task_heartbeat", task_id=job["id"], agent_id=claimed["agent_id"], lease_seconds=LEASE,
                       checkpoint={"step": 1})
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.kill()
    assert victim.proc.returncode == -signal.SIGKILL
    held = alice.json("task", "show", job["id"])["task"]
    assert held["status"] == "running"  # still Bob's until the lease runs out

    expires = parse_ts(beat["lease_expires_at"])
    wait_until(lambda: datetime.now(UTC) > expires, timeout=LEASE + 30, what="the lease to run out")
    reclaimed = wait_until(lambda: alice.json("task", "reclaim"), timeout=60, interval=0.2,
                           what="alice's reclaim to find the task")
    assert [list(pair) for pair in reclaimed] == [[job["id"], "pending"]]
    async with Client(from_printed(printed, alice.cwd, "--by", "alice")) as a:
        got = await call(a, "task_claim", worker="alice", agent_type="fragile", lease_seconds=60)
        assert got["task"]["id"] == job["id"] and got["task"]["retry_count"] == 1
        assert got["checkpoint"] == {"step": 1}  # Bob's progress, saved before he was killed
        await call(a, "task_complete", task_id=job["id"], agent_id=got["agent_id"], result={"rescued": True})
    shown = bob.json("task", "show", job["id"])
    assert (shown["task"]["status"], shown["task"]["result_data"]) == ("completed", {"rescued": True})
    actions = [r["action_type"] for r in rows("SELECT action_type FROM audit WHERE task_id = ? ORDER BY id",
                                              (job["id"],))]
    assert actions == ["task_submit", "task_claim", "checkpoint_save", "task_reclaim", "task_claim", "task_complete"]
    agents = {a["name"]: a for a in shown["agents"]}
    assert agents["bob-2"]["state"] == "terminated" and agents["bob-2"]["resource_usage"]["outcome"] == "lease_expired"
    assert agents["alice"]["state"] == "terminated"
