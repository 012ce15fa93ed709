"""Where issue 10's results show up without torch: the TUI's LR range test and axes, the report's LR figure."""

import json
import math

from engine import events as ev
from engine.lr_find import LrCurve
from engine.store import RunSummary, RunWriter, atomic_write_json
from tui import format as fmt
from tui.compare import metrics_for
from tui.run_tail import RunTail
from tui.screens.detail import lr_find_series
from tui.store_watcher import RunState

CURVE = LrCurve(stage=1, lrs=[1e-6, 1e-4, 1e-2, 1.0], losses=[1.0, 0.8, 0.5, 2.0], raw_losses=[1.0, 0.7, 0.4, 3.0],
                suggestion=1e-4, min_loss_lr=1e-2, stopped_early=True).to_dict()


def test_detail_reads_the_range_test_and_plots_loss_against_log_lr(tmp_path):
    rdir = tmp_path / "g" / "r"
    atomic_write_json(rdir / "config.json", {"data": {}, "model": {}, "train": {"lr": "find"}})
    writer = RunWriter(rdir, echo=False)
    writer.emit(ev.LrFound(stage=1, lr=1e-4, min_loss_lr=1e-2, steps=4))
    writer.close()
    tail = RunTail(rdir)
    assert tail.poll().lr_find is None
    atomic_write_json(rdir / "lr_find.json", CURVE)
    detail = tail.poll()
    assert detail.lr_find == CURVE
    assert any("LR range test (stage 1, 4 steps): lr 0.0001" in line.message for line in detail.logs)
    loss, chosen = lr_find_series(detail)
    # the last point (2.0) is above 1.5 x the starting loss: the divergence, left off the plot
    assert loss.x == (-6.0, -4.0, -2.0) and loss.y == (1.0, 0.8, 0.5)
    assert chosen.x == (-4.0, -4.0) and chosen.y == (0.5, 0.8) and chosen.label == "chosen 0.0001"
    assert tail.poll() is None  # nothing changed
    (rdir / "lr_find.json").write_text(json.dumps(CURVE)[:60])  # cut short: said, not dropped
    detail = tail.poll()
    assert detail.lr_find is None and "lr_find.json" in detail.lr_find_problem


def test_range_test_plot_leaves_the_divergence_off_so_the_valley_shows():
    from types import SimpleNamespace

    # a real curve's shape: flat at 2.3, a valley down to 2.1, then the loss explodes to 177
    losses = [2.3, 2.3, 2.25, 2.1, 2.4, 6.9, 176.9]
    lrs = [10.0 ** e for e in range(-7, 0)]
    curve = LrCurve(lrs=lrs, losses=losses, raw_losses=losses, suggestion=1e-4, min_loss_lr=1e-4).to_dict()
    loss, chosen = lr_find_series(SimpleNamespace(lr_find=curve))
    assert loss.y == (2.3, 2.3, 2.25, 2.1, 2.4) and loss.x == (-7.0, -6.0, -5.0, -4.0, -3.0)
    assert chosen.x == (-4.0, -4.0) and chosen.y == (2.1, 2.1)


def _state(axes, key="g/r"):
    return RunState(key=key, path=__import__("pathlib").Path("/nowhere") / key,
                    summary=RunSummary(run_id=key.split("/")[1], grid="g", dataset="footwear", backbone="m",
                                       strategy="full", axes=axes))


def test_filter_and_compare_know_the_axes():
    from tui.columns import COLUMNS, Context, matches
    from tui.theme import Palette

    run = _state({"train.lr": 3e-4, "data.image_size": 96})
    assert run.summary.axes_text == "lr=0.0003 image_size=96"
    assert matches(run, "lr:0.0003") and matches(run, "image_size:96 full")
    assert not matches(run, "lr:0.001") and not matches(run, "image_size:64")
    assert matches(run, "0.0003")  # plain words match the axis text too
    cell = COLUMNS["axes"].render(run, Context(now=0.0, palette=Palette()))
    assert cell.plain == "lr=0.0003 image_size=96"
    plain = _state({}, "g/p")
    assert "axes" not in [m.key for m in metrics_for([plain])]
    rows = [m for m in metrics_for([plain, run]) if m.key == "axes"]
    assert [m.value(r, None) for m in rows for r in (plain, run)] == [fmt.MISSING, "lr=0.0003 image_size=96"]


def test_summary_axes_come_from_config_and_started_event(tmp_path):
    from engine.store import load_run

    rdir = tmp_path / "g" / "r"
    cfg = {"data": {"dataset": "digits"}, "model": {"backbone": "m"}, "train": {"strategy": "full", "epochs": 2},
           "axes": {"train.lr": 0.001}}
    atomic_write_json(rdir / "config.json", cfg)
    assert load_run(rdir).summary.axes == {"train.lr": 0.001}  # queued: from config.json
    writer = RunWriter(rdir, echo=False)
    writer.emit(ev.Started(run_id="r", config=cfg))
    writer.close()
    assert load_run(rdir).summary.axes == {"train.lr": 0.001}  # running: from the started event's config
    assert json.loads((rdir / "summary.json").read_text())["axes"] == {"train.lr": 0.001}


def test_report_draws_the_range_test(tmp_path):
    from report.figures import lr_find
    from report.loading import RunData

    run = RunData(run_id="r", path=tmp_path, status="done", dataset="footwear", backbone="m", strategy="two_stage",
                  lr_find=CURVE, summary=RunSummary(axes={"train.lr": "find"}))
    out = lr_find.draw("footwear", [run, RunData(run_id="x", path=tmp_path, status="done", dataset="footwear",
                                                 backbone="m", strategy="full")], tmp_path / "lr.png")
    assert out.is_file() and out.stat().st_size > 10_000
    assert math.isclose(CURVE["suggestion"], 1e-4)
