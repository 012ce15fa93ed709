"""Fault suite, item 1 on a real grid: one wrong-typed line in one run's events, its summary.json gone, and
every command (`runs`, `report`, `export`, `run` again) still works, says "1 unreadable event" for that run,
and leaves every other run's results as they were.
"""

from __future__ import annotations

import json
import shutil

import pytest

from engine.store import GridDir
from tests.faults_fixtures import TINY, cli, one_line, results_of, rows

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


def test_lost_or_damaged_files_of_finished_runs_are_named_and_running_the_grid_again_restores_them(trained, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(trained, root)
    gdir = GridDir(root / "g")
    frozen, full = gdir.run(FROZEN), gdir.run(FULL)
    kept = results_of(root)
    frozen.results_file.unlink()
    full.probs_file.write_bytes(b"\x80\x04garbage")  # what numpy's own message calls "pickled data"
    full.results_file.write_text('{"accuracy": "high", "classes": ["a"]}')
    lost = "results.json is missing (deleted?); `finetune-tui resume g` tests it again from its last checkpoint"
    got = rows(root)
    assert {r: (row["status"], row["notes"]) for r, row in got.items()} == {FROZEN: ("done", [lost]),
                                                                           FULL: ("done", [])}
    assert got[FROZEN]["test_accuracy"] is not None  # the finished event's figures stand

    report = cli("report", "g", "--runs", str(root), "--quiet")
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    index = " ".join((gdir.report_dir / "report.md").read_text(encoding="utf-8").split())
    assert f"run {FROZEN}: {lost}" in index
    assert (f"{full.probs_file} is not a numpy .npz file (damaged?); delete it and `finetune-tui resume g` tests the "
            "run again") in index and "pickle" not in index
    assert "benchmark_?" not in index and "?" not in {p.name.split("_")[-1] for p in gdir.report_dir.iterdir()}

    assert (f"{full.results_file}: accuracy should be a number, not \"high\"; delete it and `finetune-tui resume g` "
            "tests the run again") in index
    full.probs_file.unlink()
    full.results_file.unlink()

    again = cli(*GRID, "--runs", str(root))  # the orchestrator's pending runs: both re-tested, no epoch trained
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert results_of(root).keys() == kept.keys()
    for rd in (frozen, full):
        assert [e.resumed_from_epoch for e in rd.events()[0] if e.type == "started"] == [0, 1]
        assert rd.probs() is not None and rd.results()["accuracy"] == json.loads(kept[f"g/{rd.run_id}/results.json"])[
            "accuracy"]
    assert all(row["notes"] == [] for row in rows(root).values())


def test_a_grid_folder_without_its_grid_json_is_listed_with_its_runs_and_says_what_it_lacks(trained, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(trained, root)
    gdir = GridDir(root / "g")
    gdir.info_file.unlink()
    lacks = (f"{gdir.info_file} is missing: its runs are shown, but the grid can't be resumed without it; run the "
             "grid's command again (same settings and --name) to write it")
    assert set(rows(root)) == {FROZEN, FULL}  # not invisible
    listing = cli("runs", "--runs", str(root), "--grid", "g")
    # rich folds a long path at 80 columns: compare without the line breaks
    assert listing.returncode == 0 and "".join(f"g: {lacks}".split()) in "".join(listing.stdout.split())
    resume = cli("resume", "g", "--runs", str(root))
    assert resume.returncode == 2 and one_line(resume.stderr) == f"finetune-tui: error: {lacks}"
    report = cli("report", "g", "--runs", str(root), "--quiet")
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert lacks in " ".join((gdir.report_dir / "report.md").read_text(encoding="utf-8").split())
    assert not gdir.info_file.exists()  # reading never writes it
    again = cli(*GRID, "--runs", str(root))  # the grid's command again: grid.json back, nothing retrained
    assert again.returncode == 0 and "grid g: 2 done" in again.stdout, again.stderr
    assert gdir.info_file.is_file() and cli("resume", "g", "--runs", str(root)).returncode == 0
