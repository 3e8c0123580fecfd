"""``indexer mcp`` as a subprocess, driven by the SDK's real client: over stdio (what agents
launch) with a real daemon from the harness and without one, four servers writing one key at
once, a clean exit on EOF, and streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from daemon_harness import DaemonProcess, wait_until
from indexer.mcp.catalog import TOOLS
from mcp_calls import call

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTES = {
    "tar.md": "# tar\n\n> Archiving utility.\n\nCreate an archive from files: `tar cf target.tar a b`\n",
    "ssh.md": "# ssh\n\n> Secure shell client for remote login.\n\nConnect to a remote server: `ssh user@host`\n",
    "deep/glaciers.md": "# Glaciers\n\nGlaciers carve valleys and feed rivers.\n",
}


def server_env(home: Path) -> dict[str, str]:
    """The stdio child gets only a few variables from the SDK: everything it needs goes here."""
    return {"INDEXER_HOME": str(home), "INDEXER_MODEL": "hash:64", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def stdio(home: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "indexer", "mcp", *args], env=server_env(home))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "notes"
    for name, text in NOTES.items():
        (r / name).parent.mkdir(parents=True, exist_ok=True)
        (r / name).write_text(text)
    return r.resolve()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


async def test_stdio_served_by_the_daemon_then_direct(home: Path, root: Path) -> None:
    daemon = DaemonProcess(home, [root], model="hash:64")
    try:
        daemon.ready(120)
        daemon.settle(root)
        started = time.perf_counter()
        async with Client(stdio(home)) as client:
            assert time.perf_counter() - started < 5  # spawn + initialize (0.7 s measured on 2 cores)
            assert len((await client.list_tools()).tools) == len(TOOLS)
            found = await call(client, "search", query="archive files", mode="keyword")
            assert found["served_by"] == "daemon" and found["daemon_pid"] == daemon.proc.pid
            assert found["results"][0]["path"] == str(root / "tar.md")
            status = await call(client, "index_status")
            assert status["served_by"] == "daemon" and status["daemon"]["pid"] == daemon.proc.pid
            assert status["documents"]["synced"] == 3 and status["roots"] == [str(root)]
            # no roots in the config: read_document takes the daemon's
            doc = await call(client, "read_document", path=str(root / "deep" / "glaciers.md"))
            assert doc["text"].startswith("# Glaciers")
            refused = await client.call_tool("read_document", {"path": str(home / "indexer.db")})
            assert refused.is_error and "outside the indexed roots" in refused.content[0].text
            (root / "new.md").write_text("# New\n\nzeppelins over the harbour\n")
            report = await call(client, "reindex", paths=[str(root / "new.md")])
            assert report["served_by"] == "daemon" and report["done"] and report["report"]["added"] == 1
            assert (await call(client, "search", query="zeppelins", mode="keyword"))["results"][0]["path"] == str(root / "new.md")
            written = await call(client, "memory_write", namespace="project:x", key="k", value=1)
            assert written["entry"]["version"] == 1  # memory goes to the database beside the daemon
        assert daemon.stop() == 0
    finally:
        daemon.close()
    async with Client(stdio(home)) as client:
        found = await call(client, "search", query="glaciers valleys")
        assert found["served_by"] == "direct" and found["daemon_pid"] is None
        assert str(root / "deep" / "glaciers.md") in [h["path"] for h in found["results"]]
        assert (await call(client, "index_status"))["daemon"] is None
        assert (await call(client, "memory_get", namespace="project:x", key="k"))["value"] == 1


async def test_read_only_over_stdio_hides_the_write_tools(home: Path) -> None:
    async with Client(stdio(home, "--read-only", "--tools", "docs,memory")) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"search", "read_document", "index_status", "memory_get", "memory_list"}
        result = await client.call_tool("memory_write", {"namespace": "user:a", "key": "k", "value": 1})
        assert result.is_error and "memory_write" in result.content[0].text


async def test_four_servers_writing_one_key_lose_no_version(home: Path) -> None:
    per_writer = 8

    async def writer(n: int) -> list[int]:
        async with Client(stdio(home, "--by", f"writer-{n}")) as client:
            versions = []
            for i in range(per_writer):
                written = await call(client, "memory_write", namespace="project:shared", key="log", value={"w": n, "i": i})
                versions.append(written["entry"]["version"])
            return versions

    results = await asyncio.gather(*(writer(n) for n in range(4)))  # four processes, a fresh database
    total = 4 * per_writer
    assert sorted(v for r in results for v in r) == list(range(1, total + 1))
    async with Client(stdio(home)) as client:
        got = await call(client, "memory_get", namespace="project:shared", key="log", history=True)
    assert got["versions_total"] == total and [v["version"] for v in got["versions"]] == list(range(1, total + 1))
    for n in range(4):  # each writer's values in its own order, attributed to it
        mine = [v for v in got["versions"] if v["value"]["w"] == n]
        assert [v["value"]["i"] for v in mine] == list(range(per_writer))
        assert {v["updated_by"] for v in mine} == {f"writer-{n}"}


def test_initialize_fast_and_clean_exit_on_eof(home: Path) -> None:
    env = {**os.environ, **server_env(home)}
    proc = subprocess.Popen([sys.executable, "-m", "indexer", "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        request = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "test", "version": "0"}}}
        proc.stdin.write((json.dumps(request) + "\n").encode())
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        assert answer["id"] == 1 and answer["result"]["serverInfo"]["name"] == "indexer"
        assert "then `read_document`" in answer["result"]["instructions"]
        proc.stdin.close()  # the client went away
        assert proc.wait(timeout=10) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def _post(port: int, headers: dict[str, str]) -> tuple[int, str]:
    """A raw JSON-RPC tools/call of memory_get, as curl would send it: (status, body)."""
    import urllib.error
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "memory_get", "arguments": {"namespace": "app:http", "key": "k"}}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _authorized_client(url: str, token: str) -> Any:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})))


async def test_http_on_loopback_only_and_only_with_the_token(home: Path) -> None:
    """Any local account can reach 127.0.0.1: a request without the bearer token, or with a
    wrong one, is refused (401) and reads nothing; the client configuration that
    `--print-config` prints (URL and header) works as printed."""
    port = _free_port()
    env = {**os.environ, **server_env(home)}
    printed = subprocess.run([sys.executable, "-m", "indexer", "mcp", "--http", "--port", str(port), "--print-config"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert printed.returncode == 0, printed.stderr
    entry = json.loads(printed.stdout)["mcpServers"]["indexer"]
    token_file = home / "mcp-http.token"
    assert oct(token_file.stat().st_mode & 0o777) == oct(0o600)
    token = token_file.read_text().strip()
    assert entry == {"type": "http", "url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": f"Bearer {token}"}}
    proc = subprocess.Popen([sys.executable, "-m", "indexer", "mcp", "--http", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: _listening_addresses(port) or proc.poll() is not None, timeout=30, what="the HTTP server")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert _listening_addresses(port) == ["0100007F"]  # 127.0.0.1, nothing else
        async with _authorized_client(entry["url"], token) as client:
            assert len((await client.list_tools()).tools) == len(TOOLS)
            written = await call(client, "memory_write", namespace="app:http", key="k", value="secret value")
            assert written["entry"]["version"] == 1
        async with _authorized_client(entry["url"], token) as client:  # stateless: a new client, same data
            assert (await call(client, "memory_get", namespace="app:http", key="k"))["value"] == "secret value"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token[:-1]}"},
                        {"Authorization": token}, {"X-Token": token}):
            status, body = _post(port, headers)
            assert status == 401 and "secret value" not in body and "Authorization: Bearer" in body, (headers, body)
        status, body = _post(port, entry["headers"])  # the same raw request, with the header: answered
        assert status == 200 and "secret value" in body, body
        status, body = _post(port, {**entry["headers"], "Host": "evil.example:80"})  # DNS rebinding: still refused
        assert status in (403, 421) and "secret value" not in body, (status, body)
        with pytest.raises(Exception):  # noqa: B017 - the SDK's client without the header gets no session
            async with Client(entry["url"]) as client:
                await client.list_tools()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
