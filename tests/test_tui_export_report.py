"""Export (e), report (r) and the accuracy-versus-latency screen (L), over small fixture stores."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.store import GridDir, RunDir, atomic_write_json
from tests.tui_fixtures import make_app, run_config, store_finished, until, write_grid, write_run
from tui import actions
from tui.screens.latency import LatencyScreen
from tui.screens.runs import RunsScreen
from tui.widgets.runs_table import RunsTable

SIZE = (120, 30)


def export_summary(accuracy: float, latency: dict, size_mb: float = 13.4, status: str = "ok") -> dict:
    """An ``export/summary.json`` as docs/CONTRACTS.md describes it."""
    return {
        "status": status, "error": "", "onnx_accuracy": accuracy, "onnx_f1_macro": accuracy - 0.01,
        "torch_accuracy": accuracy, "torch_f1_macro": accuracy - 0.01, "parity_max_abs_diff": 2e-6,
        "top1_agreement": 1.0, "size_mb": size_mb, "latency": latency, "torch_latency": {},
        "provenance": {"onnxruntime": "1.32.0"},
    }


def b1(p50: float) -> dict:
    return {"1": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2, "img_per_s": 1000 / p50},
            "8": {"p50_ms": p50 * 4, "p90_ms": p50 * 4.4, "p99_ms": p50 * 4.8, "img_per_s": 8000 / (p50 * 4)}}


@pytest.fixture
def exported(tmp_path) -> Path:
    """Grid "study": footwear efficientnet (fast, accurate) dominates footwear resnet50 (slow, less accurate);
    transport resnet50 was measured on CUDA only; footwear frozen is not exported."""
    root = tmp_path / "runs"
    cfgs = [run_config("footwear", "efficientnet_lite0", "full"), run_config("footwear", "resnet50", "full"),
            run_config("transport", "resnet50", "full"), run_config("footwear", "resnet50", "frozen")]
    gdir = write_grid(root, "study", cfgs)
    for cfg in cfgs:
        write_run(gdir, cfg, "done", epochs_done=4)
    summaries = [export_summary(0.91, {"CUDAExecutionProvider": b1(0.5), "CPUExecutionProvider": b1(2.5)}, 13.4),
                 export_summary(0.84, {"CPUExecutionProvider": b1(7.25)}, 94.1),
                 export_summary(0.77, {"CUDAExecutionProvider": b1(1.5)}, 94.1)]
    for cfg, summary in zip(cfgs, summaries):
        atomic_write_json(RunDir(gdir / cfg.run_id).export.summary_file, summary)
    return root


async def loaded(pilot, app, rows: int) -> RunsTable:
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(RunsTable).row_count == rows)
    return app.screen.query_one(RunsTable)


async def test_latency_screen_marks_the_models_nothing_beats(exported):
    app = make_app(exported)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 4)
        await until(pilot, lambda: sum(r.export is not None for r in app.snapshot.runs.values()) == 3)
        await pilot.press("L")
        assert isinstance(app.screen, LatencyScreen)
        table = app.screen.query_one("#latency-table")
        await until(pilot, lambda: table.row_count == 3)
        rows = {table.get_row_at(i)[2]: table.get_row_at(i) for i in range(table.row_count)}
        snapshot = app.snapshot.runs
        fast = rows["study/footwear__efficientnet_lite0__full"]
        test_acc = f"{snapshot['study/footwear__efficientnet_lite0__full'].summary.test_accuracy * 100:.1f}"
        assert list(fast) == ["★", "footwear", "study/footwear__efficientnet_lite0__full", test_acc, "91.0",
                              "2.50", "CPU", "13.4", "yes", "ok"]  # CPU preferred over the faster CUDA figure
        slow = rows["study/footwear__resnet50__full"]
        assert (slow[0], slow[4], slow[5], slow[7], slow[8]) == ("", "84.0", "7.25", "94.1", "no")
        cuda = rows["study/transport__resnet50__full"]  # alone in its dataset, measured on CUDA only
        assert (cuda[0], cuda[5], cuda[6], cuda[8]) == ("★", "1.50", "CUDA", "yes")
        assert [table.get_row_at(i)[1] for i in range(3)] == ["footwear", "footwear", "transport"]
        assert "study/footwear__resnet50__frozen" not in rows
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_latency_screen_without_exports_names_the_key(tmp_path):
    store = store_finished(tmp_path / "runs", export=False)
    app = make_app(store.root)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, 12)
        await pilot.press("L")
        empty = app.screen.query_one("#latency-empty")
        await until(pilot, lambda: empty.display)
        assert "press e to export" in str(empty.render()).replace("[b]", "").replace("[/b]", "")
        assert not app.screen.query_one("#latency-table").display


class FakePopen:
    """Stands in for the CLI child: records its command line, writes ``output`` to its log, exits with ``rc``."""

    launched: list["FakePopen"] = []
    output = ""
    rc = 0

    def __init__(self, cmd, **kwargs):
        self.cmd, self.kwargs = cmd, kwargs
        kwargs["stdout"].write(self.output)
        self.returncode = None
        FakePopen.launched.append(self)

    def poll(self):
        self.returncode = self.rc
        return self.rc


@pytest.fixture
def fake_cli(monkeypatch):
    FakePopen.launched = []
    monkeypatch.setattr(actions.subprocess, "Popen", FakePopen)
    monkeypatch.setattr("tui.app.CHILD_POLL", 0.02)
    return FakePopen


def messages(app) -> list[str]:
    return [n.message for n in app._notifications]


async def press_on_grid(pilot, app, key: str) -> None:
    await loaded(pilot, app, 4)
    await pilot.press(key)
    await until(pilot, lambda: any(m.startswith(("exports in", "report in")) or "failed" in (n.title or "")
                                   for n in app._notifications for m in [n.message]))


async def test_export_runs_the_cli_detached_and_says_where(exported, fake_cli, monkeypatch):
    monkeypatch.setattr(fake_cli, "output", f"run_id status onnx_acc\n...\n\nwritten: {GridDir.EXPORTS}\n")
    monkeypatch.setattr(fake_cli, "rc", 0)
    app = make_app(exported)
    async with app.run_test(size=SIZE) as pilot:
        await press_on_grid(pilot, app, "e")
        (child,) = fake_cli.launched
        assert child.cmd == [sys.executable, "-m", "finetune_tui.cli", "export", "--runs", str(exported), "study",
                             "--select", "best-per-dataset", "--quiet"]
        assert child.kwargs["start_new_session"] is True
        study = GridDir(exported / "study")
        assert Path(child.kwargs["stdout"].name) == study.export_log
        assert f"exporting grid study… log: {study.export_log}" in messages(app)
        assert f"exports in {study.exports_csv}" in messages(app)


async def test_export_failure_shows_the_logs_last_line(exported, fake_cli, monkeypatch):
    monkeypatch.setattr(fake_cli, "output", "Traceback (most recent call last):\n  ...\nOSError: disk full\n\n")
    monkeypatch.setattr(fake_cli, "rc", 1)
    app = make_app(exported)
    async with app.run_test(size=SIZE) as pilot:
        await press_on_grid(pilot, app, "e")
        failed = [n for n in app._notifications if n.severity == "error"]
        assert [(n.title, n.message) for n in failed] == [("exporting grid study failed", "OSError: disk full")]


async def test_report_runs_the_cli_and_shows_the_html(exported, fake_cli, monkeypatch):
    study = GridDir(exported / "study")
    index = study.report_dir / "report.md"  # what `finetune-tui report --quiet` prints (report/cli.py)
    monkeypatch.setattr(fake_cli, "output", f"{index}\n")
    monkeypatch.setattr(fake_cli, "rc", 0)
    app = make_app(exported)
    async with app.run_test(size=SIZE) as pilot:
        await press_on_grid(pilot, app, "r")
        (child,) = fake_cli.launched
        assert child.cmd == [sys.executable, "-m", "finetune_tui.cli", "report", "--runs", str(exported), "study",
                             "--quiet"]
        assert Path(child.kwargs["stdout"].name) == study.report_log
        assert f"making the report of grid study… log: {study.report_log}" in messages(app)
        assert f"report in {index.with_name('report.html')}" in messages(app)


def test_help_lists_the_new_keys(exported):
    app = make_app(exported)
    sections = dict(app.binding_sections())
    keys = {b.key: b.description for b in sections["Runs"]}
    assert (keys["e"], keys["r"], keys["L"]) == ("Export", "Report", "Latency")
    assert "Latency" in sections
