"""One rule for "ask the daemon, else do it here" (cli/daemon_client.reindex_by_daemon), used by
the CLI's reindex and the MCP reindex tool alike: the PATHs under the daemon's roots, normalised
as the daemon normalises them, go to it; the rest stay with the caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp import Client

from daemon_harness import DaemonProcess
from indexer.cli.daemon_client import reindex_by_daemon
from indexer.config import load_config
from indexer.documents.targets import partition
from indexer.mcp.server import build_server


def test_partition_normalises_as_the_daemon_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# a\n")
    (tmp_path / "link").symlink_to(root)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(root)
    mine, rest = partition([f"{root}/", str(tmp_path / "link" / "a.md"), "sub", str(root / "gone.md"), str(other)],
                           [root])
    assert mine == [root, root / "a.md", root / "sub", root / "gone.md"]
    assert rest == [str(other)]


@pytest.mark.process
@pytest.mark.timeout(180)
def test_cli_and_mcp_hand_the_daemon_its_paths_and_keep_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "a.md").write_text("# a\n\nalpha\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.setenv("INDEXER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INDEXER_MODEL", "hash:64")
    config = load_config()
    assert reindex_by_daemon(config, [str(root)], full=False) is None  # no daemon: all here
    daemon = DaemonProcess(tmp_path / "home", [root])
    try:
        daemon.ready(120)
        daemon.settle(root)
        (root / "b.md").write_text("# b\n\nbeta\n")
        asked = reindex_by_daemon(config, [f"{root}/", str(outside)], full=False)
        assert asked is not None
        answer, rest = asked
        assert answer is not None and answer["done"] and rest == [str(outside)]
        assert reindex_by_daemon(config, [str(outside)], full=False) == (None, [str(outside)])

        async def mcp() -> tuple[str, dict]:
            async with Client(build_server(config)) as client:
                refused = await client.call_tool("reindex", {"paths": [str(outside)]})
                assert refused.is_error
                done = await client.call_tool("reindex", {"paths": [f"{root}/b.md"]})
                assert not done.is_error, done.content[0].text
                return refused.content[0].text, done.structured_content

        refused, done = asyncio.run(mcp())
        assert refused.endswith(f"{outside} is outside the daemon's roots")
        assert done["served_by"] == "daemon" and done["done"]
    finally:
        daemon.stop()
        daemon.close()
