"""Schema benchmarks: fresh initialisation, and adopting a large legacy database.

    .venv/bin/python bench/bench_schema.py [--tasks 100000] [--audit 100000] [--repeat 5] [--json out.json]

Prints medians; the baseline in the same run is a plain `executescript` of the same SQL
on a bare connection (what initialisation costs without the runner's bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from indexer.storage.sqlite import driver, migrations  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_fresh(repeat: int, tmp: Path) -> dict[str, float]:
    runner, baseline = [], []
    sql = "\n".join(m.sql for m in migrations.load_migrations())
    for i in range(repeat):
        runner.append(timed(lambda: migrations.migrate(tmp / f"fresh-{i}.db")))
        conn = driver.connect(tmp / f"base-{i}.db")
        baseline.append(timed(lambda: conn.executescript(sql)))
        conn.close()
    return {"fresh_init_median_ms": statistics.median(runner) * 1e3,
            "baseline_executescript_median_ms": statistics.median(baseline) * 1e3}


def bench_legacy(tasks: int, audit: int, repeat: int, tmp: Path) -> dict[str, float]:
    import legacy_fixtures  # tests/legacy_fixtures.py: the same builder the tests use

    times, copies = [], []
    for i in range(repeat):
        path = tmp / f"legacy-{i}.db"
        legacy_fixtures.build_bench_legacy(path, tasks=tasks, audit=audit)
        size = path.stat().st_size
        copies.append(timed(lambda: migrations.backup_copy(path)))
        times.append(timed(lambda: migrations.migrate(path, backup=False)))
    return {"legacy_tasks": tasks, "legacy_audit": audit, "legacy_file_mb": size / 1e6,
            "legacy_migrate_median_s": statistics.median(times),
            "legacy_backup_copy_median_s": statistics.median(copies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_fresh(max(args.repeat, 5), Path(tmp))
        result.update(bench_legacy(args.tasks, args.audit, args.repeat, Path(tmp)))
    for key, value in result.items():
        print(f"{key:36} {value:,.3f}" if isinstance(value, float) else f"{key:36} {value:,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
