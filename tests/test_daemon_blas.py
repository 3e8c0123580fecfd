"""The daemon runs numpy's BLAS on one thread (its searches are memory-bound; a second
OpenBLAS thread only spins), unless the user set OPENBLAS_NUM_THREADS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from indexer.cli.daemon_cmds import one_blas_thread

PROBE = ("from indexer.cli.daemon_cmds import one_blas_thread; one_blas_thread(); import numpy, json, threadpoolctl; "
         "print(json.dumps([p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']))")


def test_a_users_choice_wins() -> None:
    env = {"OPENBLAS_NUM_THREADS": "2"}
    one_blas_thread(env)
    assert env == {"OPENBLAS_NUM_THREADS": "2"}
    empty: dict[str, str] = {}
    one_blas_thread(empty)
    assert empty == {"OPENBLAS_NUM_THREADS": "1"}


@pytest.mark.process
def test_numpy_in_the_daemon_process_has_one_blas_thread() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    threads = json.loads(out.stdout)
    assert threads and set(threads) == {1}
