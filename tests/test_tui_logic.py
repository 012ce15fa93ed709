"""Formatting, sorting, filtering and comparison rules of the TUI, without Textual."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import RunSummary
from tests.tui_fixtures import NOW, store_finished
from tui import format as fmt
from tui.actions import free_name
from tui.columns import COLUMNS, Cell, Context, matches, sort_key
from tui.compare import best_indices, metrics_for, winners
from tui.store_watcher import ExportInfo, RunState, StoreWatcher
from tui.theme import Palette


def run(key="g/footwear__resnet50__full", status="done", **kw) -> RunState:
    grid, rid = key.split("/")
    ds, bb, st = rid.split("__")
    return RunState(key=key, path=Path("/x") / key, summary=RunSummary(run_id=rid, grid=grid, dataset=ds, backbone=bb,
                                                                      strategy=st, status=status, **kw))


@pytest.mark.parametrize("value,text", [(0.8731, "87.3"), (None, "–"), (float("nan"), "–"), (1.0, "100.0")])
def test_pct(value, text):
    assert fmt.pct(value) == text


@pytest.mark.parametrize("seconds,text", [(5, "5s"), (62, "1m02s"), (3720, "1h02m"), (None, "–"), (-1, "–")])
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text


def test_sparkline_scales_to_its_own_range_and_keeps_the_last_values():
    assert fmt.sparkline([0.1, 0.5, 0.9]) == "▁▅█"
    assert fmt.sparkline([0.5, 0.5]) == "▅▅"
    assert fmt.sparkline(list(range(30)), width=4) == "▁▃▆█"
    assert fmt.sparkline([]) == ""


def test_rate_and_bar():
    assert fmt.rate(1234.5) == "1.2k" and fmt.rate(410) == "410" and fmt.rate(0) == "–"
    assert fmt.bar(0.5, 4) == "██  " and fmt.bar(1.0, 3) == "███" and fmt.bar(0.0, 2) == "  "


def test_sort_key_puts_missing_values_last_both_ways():
    cells = [Cell("a", sort=0.5), Cell("b", sort=None), Cell("c", sort=0.9), Cell("d", sort=0.1)]
    up = sorted(cells, key=lambda c: sort_key(c))
    down = sorted(cells, key=lambda c: sort_key(c, reverse=True))
    assert [c.plain for c in up] == ["d", "a", "c", "b"]
    assert [c.plain for c in down] == ["c", "a", "d", "b"]
    words = sorted([Cell("x", sort="Beta"), Cell("y", sort="alpha")], key=lambda c: sort_key(c))
    assert [c.plain for c in words] == ["y", "x"]


def test_filter_terms_fields_and_exclusions():
    r = run(status="failed", error="NaN loss at epoch 3")
    assert matches(r, "resnet50 full")
    assert matches(r, "status:failed nan")
    assert not matches(r, "status:done")
    assert not matches(r, "!resnet")
    assert matches(r, "dataset:foot")
    assert not matches(r, "vgg16")


def test_columns_render_values():
    ctx = Context(now=NOW, palette=Palette())
    r = run(status="running", epoch=3, epochs=10, val_acc=0.8123, best_val_acc=0.83, val_acc_history=[0.5, 0.7, 0.81],
            epoch_seconds=[30.0, 30.0, 30.0], started_at=NOW - 95, phase="train", step=4, steps=14)
    assert COLUMNS["epoch"].render(r, ctx).plain == "3/10"
    assert COLUMNS["val_acc"].render(r, ctx).plain == "81.2"
    assert COLUMNS["curve"].render(r, ctx).plain == "▁▆█"
    assert COLUMNS["elapsed"].render(r, ctx).plain == "1m35s"
    assert COLUMNS["eta"].render(r, ctx).plain == "3m30s"
    assert COLUMNS["note"].render(r, ctx).plain == "train 4/14"
    failed = run(status="failed", error="CUDA out of memory: lower data.batch_size\nsecond line")
    assert COLUMNS["note"].render(failed, ctx).plain == "CUDA out of memory: lower data.batch_size"
    exported = RunState(key=r.key, path=r.path, summary=r.summary, export=ExportInfo(status="ok", cpu_b1_p50_ms=3.456))
    assert COLUMNS["latency"].render(exported, ctx).plain == "3.46"


def test_best_indices():
    assert best_indices([0.5, 0.9, None, 0.9], "max") == {1, 3}
    assert best_indices([0.5, 0.9, 0.2], "min") == {2}
    assert best_indices([0.5, None], "max") == set()  # one value: nothing to beat
    assert best_indices(["a", "b"], "max") == set()
    assert best_indices([0.5, 0.9], "") == set()


def test_winners_per_dataset(tmp_path):
    store_finished(tmp_path / "runs")
    snap = StoreWatcher(tmp_path / "runs").poll()
    runs = list(snap.runs.values())
    result = {w.dataset: w for w in winners(runs)}
    for dataset in ("footwear", "transport"):
        pool = [r for r in runs if r.summary.dataset == dataset]
        best = max(pool, key=lambda r: r.summary.test_accuracy)
        w = result[dataset]
        assert w.run.key == best.key and w.run_score == best.summary.test_accuracy and w.basis == "test acc"
        best_by_strategy = {}
        for r in pool:
            best_by_strategy[r.summary.strategy] = max(best_by_strategy.get(r.summary.strategy, 0), r.summary.test_accuracy)
        assert w.strategy == max(best_by_strategy, key=best_by_strategy.get)
        assert w.n_runs == 6


def test_winners_fall_back_to_validation_while_nothing_is_done():
    a = run("g/people__vgg16__frozen", status="running", best_val_acc=0.4)
    b = run("g/people__vgg16__full", status="running", best_val_acc=0.6)
    (w,) = winners([a, b])
    assert w.run.key == b.key and w.basis == "best val acc" and w.strategy == "full"


def test_export_rows_appear_only_with_an_export():
    plain = run()
    exported = RunState(key="g/a__b__c", path=Path("/x"), summary=RunSummary(), export=ExportInfo(status="ok"))
    assert not any(m.export for m in metrics_for([plain, plain]))
    assert {"onnx_acc", "latency"} <= {m.key for m in metrics_for([plain, exported])}


def test_free_name(tmp_path):
    assert free_name(tmp_path, "demo") == "demo"
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo-2").mkdir()
    assert free_name(tmp_path, "demo") == "demo-3"
    assert free_name(tmp_path, "demo-2") == "demo-3"
