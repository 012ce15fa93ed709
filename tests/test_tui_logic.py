"""Formatting, sorting, filtering and comparison rules of the TUI, without Textual."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import FAILURE_KINDS, DiskFull
from engine.failures import classify
from engine.store import DEAD_WORKER, RunSummary, selection_key
from tests.tui_fixtures import NOW, store_finished
from tui import format as fmt
from tui.actions import free_name
from tui.columns import COLUMNS, Cell, Context, matches, sort_key
from tui.compare import best_indices, metrics_for, winners
from tui.store_watcher import ExportInfo, RunState, StoreWatcher
from tui.theme import Palette
from tui.widgets.run_line import describe


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
    failed = run(status="failed", error=DEAD_WORKER + "\nsecond line", error_kind="killed")
    assert COLUMNS["note"].render(failed, ctx).plain == f"killed: {DEAD_WORKER}"
    exported = RunState(key=r.key, path=r.path, summary=r.summary, export=ExportInfo(status="ok", cpu_b1_p50_ms=3.456))
    assert COLUMNS["latency"].render(exported, ctx).plain == "3.46"


def test_best_indices():
    assert best_indices([0.5, 0.9, None, 0.9], "max") == {1, 3}
    assert best_indices([0.5, 0.9, 0.2], "min") == {2}
    assert best_indices([0.5, None], "max") == set()  # one value: nothing to beat
    assert best_indices(["a", "b"], "max") == set()
    assert best_indices([0.5, 0.9], "") == set()


def test_failed_runs_show_their_kind(tmp_path):
    """The kind of a failure (engine.errors.FAILURE_KINDS) leads its message in the note and the line."""
    assert {k: fmt.failure_kind(k) for k in FAILURE_KINDS} == {
        "user": "user error", "oom": "out of memory", "disk_full": "disk full", "killed": "killed", "crash": "crash"}
    failure = classify(DiskFull(tmp_path / "g" / "r", 3.0), tmp_path / "g" / "r")
    full = run(status="failed", error=failure.message, error_kind=failure.kind)
    ctx = Context(now=NOW, palette=Palette())
    note = COLUMNS["note"].render(full, ctx).plain
    assert note == failure.message and note.startswith("disk full: 3 MB free on ")  # the kind is not said twice
    line = describe(full, Palette()).plain
    assert f"failed (disk full): disk full: 3 MB free on {tmp_path / 'g' / 'r'}" in line
    assert matches(full, "kind:disk_full") and matches(full, "disk") and not matches(full, "kind:oom")
    dead = run(status="failed", error=DEAD_WORKER, error_kind="killed")
    assert f"failed (killed): {DEAD_WORKER}" in describe(dead, Palette()).plain


def test_winners_per_dataset_are_chosen_on_validation(tmp_path):
    store_finished(tmp_path / "runs")
    snap = StoreWatcher(tmp_path / "runs").poll()
    runs = list(snap.runs.values())
    result = {w.dataset: w for w in winners(runs)}
    assert sorted(result) == ["footwear", "transport"]
    for dataset, w in result.items():
        pool = sorted((r for r in runs if r.summary.dataset == dataset), key=lambda r: selection_key(r.summary))
        best = pool[0]
        assert w.run.key == best.key and w.n_runs == 6 and w.finished
        assert w.val_acc == max(r.summary.best_val_acc for r in pool) == best.summary.best_val_acc
        assert w.test_acc == best.summary.test_accuracy  # shown beside it, not what chose it
        assert (w.strategy, w.backbone) == (best.summary.strategy, best.summary.backbone)
        other = [r for r in pool if r.summary.strategy != w.strategy]
        assert w.runner_up_strategy.key == other[0].key
        assert w.runner_up_backbone.key == next(r for r in pool if r.summary.backbone != w.backbone).key
    # the fixture's test scores do not follow its validation scores: choosing on test would pick another run
    footwear = [r for r in runs if r.summary.dataset == "footwear"]
    assert result["footwear"].run.key != max(footwear, key=lambda r: r.summary.test_accuracy).key


def test_winners_never_look_at_the_test_set():
    # a higher test accuracy does not win; equal val accuracy is decided by the lower val loss
    a = run("g/people__vgg16__frozen", best_val_acc=0.60, best_val_loss=0.90, test_accuracy=0.95)
    b = run("g/people__vgg16__full", best_val_acc=0.62, best_val_loss=0.95, test_accuracy=0.50)
    c = run("g/people__resnet50__full", best_val_acc=0.62, best_val_loss=0.80, test_accuracy=0.40)
    (w,) = winners([a, b, c])
    assert w.run.key == c.key and (w.strategy, w.backbone) == ("full", "resnet50") and w.test_acc == 0.40
    assert w.runner_up_strategy.key == a.key and w.runner_up_backbone.key == b.key


def test_winners_judge_finished_runs_once_there_are_any():
    a = run("g/people__vgg16__frozen", status="running", best_val_acc=0.4, best_val_loss=1.0)
    b = run("g/people__vgg16__full", status="running", best_val_acc=0.6, best_val_loss=0.9)
    (w,) = winners([a, b])
    assert w.run.key == b.key and not w.finished and w.strategy == "full" and w.test_acc is None
    done = run("g/people__vgg16__frozen", status="done", best_val_acc=0.5, best_val_loss=0.95, test_accuracy=0.5)
    (w,) = winners([done, b])
    assert w.run.key == done.key and w.finished and w.n_runs == 1 and w.runner_up_strategy is None
    assert winners([run("g/people__vgg16__full", status="queued")]) == []  # no validation score yet


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


def test_a_resumed_runs_time_counts_every_session_not_only_its_last_workers():
    # cancelled at epoch 34 of 40 and resumed: the last worker ran 6 s, the run trained 41.8 s in all
    from engine.console import run_seconds
    from tui.columns import elapsed_seconds

    resumed = RunSummary(run_id="a", status="done", total_seconds=6.0, train_seconds=41.8, started_at=NOW - 50)
    fresh = RunSummary(run_id="b", status="done", total_seconds=45.0, train_seconds=41.8, started_at=NOW - 50)
    for summary, seconds in ((resumed, 41.8), (fresh, 45.0)):
        assert run_seconds(summary) == seconds
        assert elapsed_seconds(RunState(key="g/x", path=Path("/x"), summary=summary), NOW) == seconds
    assert COLUMNS["elapsed"].render(RunState(key="g/x", path=Path("/x"), summary=resumed),
                                   Context(now=NOW, palette=Palette())).plain == fmt.duration(41.8)


def test_a_cancel_request_on_a_queued_run_says_it_will_not_start_and_no_results_say_why():
    from dataclasses import replace

    from tui.screens.detail import no_results_text

    queued = replace(run(status="queued"), cancel_requested=True)
    assert describe(queued, Palette()).plain.endswith("queued: cancel requested, it will not start")
    running = replace(run(status="running"), cancel_requested=True)
    assert "cancel requested, waiting for the worker to stop" in describe(running, Palette()).plain
    failed = run(status="failed", error="unknown backbone 'no_such_net'", error_kind="user")
    assert no_results_text(failed) == "no test results: the run failed before its test (unknown backbone 'no_such_net')"
    assert no_results_text(run(status="cancelled")).startswith("no test results: the run was cancelled")
    assert no_results_text(run(status="running")) == "test results appear here when the run finishes"


def test_the_winners_best_run_names_its_grid_and_axis_values():
    # marked runs of several grids often share backbone/strategy: "test_resnet/full" alone named no run
    from rich.console import Console

    from tui.widgets.winners_table import winners_table

    a = run("g2/people__vgg16__full", best_val_acc=0.9, best_val_loss=0.3, test_accuracy=0.9,
            axes={"train.lr": 3e-4})
    b = run("g3/people__vgg16__full", best_val_acc=0.8, best_val_loss=0.5, test_accuracy=0.8)
    console = Console(width=200, record=True)
    console.print(winners_table(winners([a, b]), "winners", Palette()))
    assert "g2 / vgg16 / full lr=0.0003" in console.export_text()


def test_the_winners_table_breaks_lines_between_names_at_80_columns():
    # it folded them mid-word: "g2/test_effici" over "entnet/frozen", "test_efficient" over "net"
    from rich.console import Console

    from tui.widgets.winners_table import winners_table

    runs = [run(f"g{i}/digits__{b}__{s}", best_val_acc=acc, best_val_loss=1 - acc, test_accuracy=acc)
            for i, (b, s, acc) in enumerate([("test_efficientnet", "frozen", 0.83), ("test_efficientnet", "full", 0.7),
                                             ("test_resnet", "discriminative", 0.75)], 1)]
    console = Console(width=80, record=True)
    console.print(winners_table(winners(runs), "winners", Palette()))
    words = console.export_text().split()
    for name in ("g1", "test_efficientnet", "frozen", "discriminative", "test_resnet"):
        assert name in words, console.export_text()
