"""Fault suite, item 1 on a real grid: one wrong-typed line in one run's events, its summary.json gone, and
every command (`runs`, `report`, `export`, `run` again) still works, says "1 unreadable event" for that run,
and leaves every other run's results as they were.
"""

from __future__ import annotations

import shutil

import pytest

from engine.store import GridDir
from tests.faults_fixtures import TINY, cli, results_of, rows

BAD_LINE = '{"type":"epoch","v":1,"ts":1,"epoch":"x"}\n'
FROZEN, FULL = "digits__test_efficientnet__frozen", "digits__test_efficientnet__full"
GRID = ["run", *TINY, "--strategies", "frozen,full", "--epochs", "1", "--name", "g"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained") / "runs"
    done = cli(*GRID, "--runs", str(root))
    assert done.returncode == 0, done.stderr
    return root


def test_checkpoints_are_as_readable_as_the_rest_of_the_store(trained):
    """Item 8: safetensors and torch.save write 0600 temp files; the store makes them 0644 like its other files."""
    import stat

    from engine.store.atomic import FILE_MODE

    for rd in GridDir(trained / "g").run_dirs():
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in rd.path.iterdir() if p.is_file()}
        assert {"best.safetensors", "last_state.pt", "config.json", "events.jsonl"} <= set(modes)
        assert modes["best.safetensors"] == modes["last_state.pt"] == modes["config.json"], modes
        assert modes["config.json"] == FILE_MODE  # what the umask allows, as for any file the user writes


def test_every_command_works_on_a_store_with_one_bad_event_line(trained, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(trained, root)
    gdir = GridDir(root / "g")
    bad = gdir.run(FROZEN)
    with open(bad.events_file, "a", encoding="utf-8") as fh:
        fh.write(BAD_LINE)
    bad.summary_file.unlink()
    kept = results_of(root)
    note = "1 unreadable event in its events.jsonl (skipped)"

    got = rows(root)
    assert {r: row["status"] for r, row in got.items()} == {FROZEN: "done", FULL: "done"}
    assert got[FROZEN]["notes"] == [note] and got[FULL]["notes"] == []
    assert f"g/{FROZEN}: {note}" in " ".join(cli("runs", "--runs", str(root)).stdout.split())

    again = cli(*GRID, "--runs", str(root))  # every run done: nothing to train, no crash
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "grid g: 2 done" in again.stdout

    export = cli("export", "g", "--runs", str(root), "--select", "best-per-dataset", "--no-bench", "--quiet")
    assert export.returncode == 0 and "Traceback" not in export.stderr, export.stderr
    assert gdir.exports_csv.is_file()

    report = cli("report", "g", "--runs", str(root), "--quiet")
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    index = (gdir.report_dir / "report.md").read_text(encoding="utf-8")
    assert f"run {FROZEN}: {note}" in index
    assert results_of(root) == kept  # nothing any command did changed a result
