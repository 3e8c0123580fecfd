"""The MCP catalogue's size: the JSON of `tools/list` as the server sends it (compact, the
result's SDK `_meta` aside), in total and per tool, for this tree and for git revision
--before in the same run.

    .venv/bin/python bench/bench_catalogue.py [--before 7044471] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_daemon import source_tree  # noqa: E402

MEASURE = r"""
import asyncio, json
from mcp import Client
from mcp.types import ListToolsResult
from indexer.config import load_config
from indexer.mcp.server import build_server
async def main():
    async with Client(build_server(load_config())) as client:
        tools = (await client.list_tools()).tools
    dump = lambda value: value.model_dump_json(by_alias=True, exclude_none=True)
    print(json.dumps({"total": len(dump(ListToolsResult(tools=tools))), "tools": {t.name: len(dump(t)) for t in tools}}))
asyncio.run(main())
"""


def measure(code: Path, home: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "INDEXER_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", MEASURE], env=env, cwd=str(home), capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="7044471", help="git revision to compare with ('none': skip it)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-catalogue-"))
    try:
        results = {"this tree": measure(Path(__file__).resolve().parents[1], tmp)}
        if args.before != "none":
            results[args.before] = measure(source_tree(args.before, tmp / "before"), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, r in results.items():
        print(f"{name:12} tools/list {r['total']:6,} bytes for {len(r['tools'])} tools "
              f"({r['total'] / len(r['tools']):,.0f} a tool)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
