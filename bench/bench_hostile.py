"""What one hostile note costs to prepare (read, front matter, chunks, summary), by size.

    .venv/bin/python bench/bench_hostile.py [--lines 12500,25000,50000,100000] [--json out.json]

Each shape is written as a file and prepared by ``DocumentSync._prepare_file`` with the
packaged model's tokenizer (what ``reindex`` does before writing), at each size; the baseline
in the same run is an ordinary note of prose paragraphs under a few headings with the same
number of lines. Linear cost shows as a flat "µs/line" column down the sizes. Front matter
shapes are one size (their cost is capped).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.config import load_config  # noqa: E402
from indexer.documents import planning  # noqa: E402
from indexer.documents.sync import DocumentSync, PrepareFailed  # noqa: E402
from indexer.documents.tokenizer import default_token_counter  # noqa: E402
from indexer.testing import HashEmbedder  # noqa: E402

BODIES = {
    "baseline: prose under headings": lambda n: "".join(
        f"## Part {i}\n" if i % 20 == 0 else ("\n" if i % 4 == 3 else f"Line {i} of ordinary prose, with words.\n")
        for i in range(n)),
    "# h lines": lambda n: "# h\n" * n,
    "# a / ## b lines": lambda n: "# a\n## b\n" * (n // 2),
    "indented unclosed fences": lambda n: "    ```\n" * n,
    "unclosed fence then text": lambda n: "```\n" + "code line\n" * (n - 1),
}
FRONT = {
    "recursive alias": "---\na: &x [*x]\n---\n# T\n",
    "billion laughs (9^9)": ("---\nl0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                             + "".join(f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
                             + "---\n# T\n"),
    "front matter near the 64 KiB cap": "---\n" + "".join(f"k{i:03d}: [alpha, beta, {{c: d}}, {'e' * 30}]\n"
                                                         for i in range(999)) + "---\n# T\n",
    "deep flow nesting (60 KiB)": "---\na: " + "[" * 30000 + "]" * 30000 + "\n---\n# T\n",
}


def prepare(sync: DocumentSync, path: Path, text: str) -> tuple[float, str]:
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    started = time.perf_counter()
    result = sync._prepare_file(planning.DiskFile(path, stat.st_mtime_ns, stat.st_size))
    spent = time.perf_counter() - started
    if isinstance(result, PrepareFailed):
        return spent, f"failed: {result.reason}"
    error = result.metadata.get("front_matter_error")
    return spent, f"{len(result.rows)} chunks" + (f"; {error}" if error else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", default="12500,25000,50000,100000")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.lines.split(",")]
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = load_config({"db": str(root / "x.db"), "roots": [str(root)]})
        sync = DocumentSync(config, embedder=HashEmbedder(dim=8), counter=default_token_counter())
        print(f"{'shape':34} {'lines':>8} {'seconds':>8} {'µs/line':>8}  outcome")
        for name, body in BODIES.items():
            for n in sizes:
                spent, outcome = prepare(sync, root / "note.md", body(n))
                results.append({"shape": name, "lines": n, "seconds": round(spent, 3)})
                print(f"{name:34} {n:8} {spent:8.2f} {spent / n * 1e6:8.1f}  {outcome}")
        for name, text in FRONT.items():
            spent, outcome = prepare(sync, root / "note.md", text)
            results.append({"shape": name, "bytes": len(text), "seconds": round(spent, 3)})
            print(f"{name:34} {'':8} {spent:8.2f} {'':8}  {outcome[:90]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
