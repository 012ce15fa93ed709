"""The TUI never loads torch: every tui module, and the store package it reads through, import without it,
and reading a whole store (runs table, detail, compare, latency) does not load it lazily either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.tui_fixtures import store_failed, store_finished, store_running

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import importlib, json, pkgutil, sys
from pathlib import Path

import engine.store
import tui

names = ["engine.store"] + sorted(m.name for m in pkgutil.walk_packages(tui.__path__, "tui."))
for name in names:
    importlib.import_module(name)
imported = "torch" in sys.modules

from tui.compare import winners
from tui.latency import latency_rows
from tui.run_tail import RunTail
from tui.store_watcher import StoreWatcher

snapshot = StoreWatcher(Path(sys.argv[1])).poll()
details = [RunTail(run.path).poll() for run in snapshot.runs.values()]
rows = latency_rows(snapshot.runs.values())
best = winners(list(snapshot.runs.values()))
print(json.dumps({"modules": names, "torch_on_import": imported, "torch_after_reading": "torch" in sys.modules,
                  "runs": len(snapshot.runs), "details": sum(d is not None for d in details),
                  "latency_rows": len(rows), "winners": len(best)}))
"""


def test_tui_imports_and_reads_a_store_without_torch(tmp_path):
    root = tmp_path / "runs"
    store_finished(root)
    store_failed(root)
    live = store_running(root)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", PROBE, str(root)], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=120)
    finally:
        live.release()
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"engine.store", "tui.app", "tui.store_watcher", "tui.screens.compare", "tui.widgets.runs_table"} <= set(out["modules"])
    assert not out["torch_on_import"], "importing the TUI loaded torch"
    assert not out["torch_after_reading"], "reading a store in the TUI loaded torch"
    assert out["runs"] == out["details"] == 12 + 4 + 6
    assert out["latency_rows"] == 12 and out["winners"] == 2
