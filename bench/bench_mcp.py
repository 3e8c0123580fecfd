"""`indexer mcp` benchmarks: a real daemon on a sample of ../shared/corpora (read in place), the
server driven over stdio by the SDK's own client, as an agent host runs it.

    .venv/bin/python bench/bench_mcp.py [--files 300] [--calls 30] [--model NAME] [--json out.json]

1. Time to `initialize`: spawn `indexer mcp`, send the initialize request, read the answer
   (raw JSON-RPC, no client library), wall time and the server's CPU time until then (the
   CPU time barely moves with other load on the machine); then close stdin and time the
   exit; and the SDK client's connect (spawn + handshake) for comparison.
2. `search` p50 through the daemon (served_by=daemon), next to the daemon's own socket
   answer for the same queries (what MCP adds on top).
3. `memory_get` and `memory_write` p50 (the database directly).
4. The server process's RSS after those calls; then, with the daemon stopped, the first
   direct search (the model loads in the server) and the RSS after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcp import Client, StdioServerParameters  # noqa: E402

from indexer.daemon.control import call, socket_path  # noqa: E402

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
QUERIES = ["compress a folder", "copy files to a remote machine", "find files by name", "change file permissions",
           "search text in files", "show disk usage", "list running processes", "download a file over http"]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(values), 4), "p95": round(ordered[int(round(0.95 * (len(ordered) - 1)))], 4),
            "min": round(ordered[0], 4), "max": round(ordered[-1], 4), "n": len(values)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def server_pid() -> int:
    """The `indexer mcp` child of this process (the SDK's client spawned it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"mcp" in cmdline:
            return int(entry.name)
    raise RuntimeError("no `indexer mcp` child process found")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def initialize_once(env: dict[str, str]) -> tuple[float, float, float]:
    """(spawn → initialize answered, the server's CPU seconds until then, stdin closed →
    process exited), in seconds. The CPU time does not grow with other load on the machine."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "indexer", "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(request) + "\n").encode())
    proc.stdin.flush()
    answer = json.loads(proc.stdout.readline())
    ready = time.perf_counter() - t0
    cpu = cpu_seconds(proc.pid)
    assert "result" in answer, answer
    t1 = time.perf_counter()
    proc.stdin.close()
    code = proc.wait(30)
    assert code == 0, code
    return ready, cpu, time.perf_counter() - t1


async def timed_calls(client: Client, name: str, args: list[dict[str, Any]]) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for a in args:
        t0 = time.perf_counter()
        result = await client.call_tool(name, a)
        times.append(time.perf_counter() - t0)
        if result.is_error:
            raise RuntimeError(result.content[0].text)
        results.append(result.structured_content)
    return times, results


async def sessions(args: argparse.Namespace, env: dict[str, str], sock: Path, daemon: subprocess.Popen) -> dict[str, Any]:
    out: dict[str, Any] = {}
    params = StdioServerParameters(command=sys.executable, args=["-m", "indexer", "mcp"], env=env)
    connects = []
    for _ in range(args.spawns):
        t0 = time.perf_counter()
        async with Client(params) as client:
            connects.append(time.perf_counter() - t0)
            await client.list_tools()
    out["sdk_client_connect_s"] = summary(connects)

    async with Client(params) as client:
        queries = [{"query": QUERIES[i % len(QUERIES)], "k": 8} for i in range(args.calls)]
        await client.call_tool("search", queries[0])  # the first call imports the search path
        times, results = await timed_calls(client, "search", queries)
        assert all(r["served_by"] == "daemon" for r in results)
        out["search_via_daemon_ms"] = summary([t * 1000 for t in times])
        socket_times = []
        for q in queries:
            t0 = time.perf_counter()
            call(sock, {"op": "search", "query": q["query"], "k": 8}, timeout=30)
            socket_times.append(time.perf_counter() - t0)
        out["daemon_socket_search_ms"] = summary([t * 1000 for t in socket_times])
        await client.call_tool("memory_write", {"namespace": "project:bench", "key": "k", "value": {"n": 0}})
        times, _ = await timed_calls(client, "memory_get", [{"namespace": "project:bench", "key": "k"}] * args.calls)
        out["memory_get_ms"] = summary([t * 1000 for t in times])
        writes = [{"namespace": "project:bench", "key": "k", "value": {"n": i}} for i in range(1, args.calls + 1)]
        times, _ = await timed_calls(client, "memory_write", writes)
        out["memory_write_ms"] = summary([t * 1000 for t in times])
        out["server_rss_mb"] = rss_mb(server_pid())

    daemon.send_signal(signal.SIGTERM)
    daemon.wait(60)
    async with Client(params) as client:
        t0 = time.perf_counter()
        first = await client.call_tool("search", {"query": QUERIES[0], "k": 8})
        out["direct_first_search_s"] = round(time.perf_counter() - t0, 3)
        assert not first.is_error and first.structured_content["served_by"] == "direct", first.content[0].text
        times, _ = await timed_calls(client, "search", [{"query": q, "k": 8} for q in QUERIES])
        out["direct_search_warm_ms"] = summary([t * 1000 for t in times])
        out["server_rss_after_direct_search_mb"] = rss_mb(server_pid())
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    root = tmp / "notes"
    root.mkdir()
    pages = sorted((CORPORA / "tldr" / "pages" / "common").glob("*.md"))[: args.files]
    if not pages:
        raise SystemExit(f"no corpus at {CORPORA}")
    for f in pages:
        shutil.copy(f, root / f.name)
    home = tmp / "home"
    env = {"INDEXER_HOME": str(home), "HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", ""),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if args.model:
        env["INDEXER_MODEL"] = args.model
    if args.backend:
        env["INDEXER_BACKEND"] = args.backend
    results: dict[str, Any] = {"files": len(pages), "model": args.model or "default", "backend": args.backend or "default"}
    log = (tmp / "daemon.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "indexer", "daemon", "--root", str(root)], env={**os.environ, **env},
                              stdout=log, stderr=subprocess.STDOUT)
    sock = socket_path(home / "run", home / "indexer.db")
    started = time.perf_counter()
    try:
        while True:
            if daemon.poll() is not None:
                raise RuntimeError((tmp / "daemon.log").read_text())
            try:
                state = call(sock, {"op": "status"}, timeout=30)
                d, docs = state["daemon"], state["documents"]
                settled = docs["total"] > 0 and docs["pending"] == docs["stale"] == 0
                if d["state"] == "idle" and d["chunks_to_embed"] == 0 and settled:
                    break
            except Exception as exc:
                state = {"error": str(exc)}
            if time.perf_counter() - started > args.index_timeout:
                raise RuntimeError(f"the daemon did not finish indexing: {state}")
            time.sleep(0.25)
        results["documents"] = docs["total"]
        results["initial_index_s"] = round(time.perf_counter() - started, 1)
        ready, cpu, exits = zip(*(initialize_once(env) for _ in range(args.spawns)))
        results["initialize_s"] = summary(list(ready))
        results["initialize_cpu_s"] = summary(list(cpu))
        results["exit_on_eof_s"] = summary(list(exits))
        results.update(asyncio.run(sessions(args, env, sock, daemon)))
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--spawns", type=int, default=5)
    parser.add_argument("--model", help="e.g. hash:64 for a quick run (default: the configured model)")
    parser.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--index-timeout", type=float, default=900.0, help="seconds allowed for the first index")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = run(args)
    for key, value in results.items():
        print(f"{key:36} {value}")
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
