"""Runs started together on a new SQLite tracking store must not race on creating its tables."""

from __future__ import annotations

import subprocess
import sys

import filelock
import pytest

from cosinetrack.handlers.mlflow import sqlite_store_lock

_OPEN_STORE = """
import sys
from cosinetrack.handlers import MLflowRunHandler
MLflowRunHandler(tracking_uri=sys.argv[1], experiment_name="race", run_name=sys.argv[2])
print("ok")
"""


def test_new_sqlite_store_opened_by_two_processes_at_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN_STORE, uri, f"run{i}"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for out, err, code in results:
        assert code == 0, err[-2000:]
        assert out.strip().endswith("ok")


@pytest.mark.parametrize(
    "uri, locked",
    [("sqlite:///{tmp}/a.db", True), ("http://127.0.0.1:5000", False), ("sqlite:///:memory:", False), (None, False)],
)
def test_store_lock_only_for_sqlite_files(tmp_path, monkeypatch, uri, locked):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = uri.format(tmp=tmp_path) if uri else uri
    with sqlite_store_lock(uri):
        other = filelock.FileLock(str(tmp_path / "a.db.lock"), timeout=0)
        if locked:
            with pytest.raises(filelock.Timeout):
                other.acquire()
        else:
            other.acquire()
            other.release()
