"""Splits held on the device or streamed from the dataset cache: the same batches for the same seed; the budget
decides which; a streamed run trains exactly like an in-memory one; per-phase times and the honest total."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine import events as ev
from engine.console import ProgressView, duration, runs_table
from engine.data import open_dataset
from engine.data.stream import HeldFeed, RowReader, StreamedFeed, available_host_bytes, budget, feeds, residency
from engine.store import DatasetCacheDir, RunSummary, fold, load_run
from engine.timing import PHASES, PhaseTimes
from engine.worker import main as worker_main

from .data_fixtures import write_image_class
from .trainer_fixtures import assert_same_training, events_of, make_run, of_type


def folder(tmp_path, per_class=8):
    tree = tmp_path / "shoes"
    for label, cls in enumerate(("boot", "sandal", "sneaker")):
        write_image_class(tree / cls, label, per_class)
    return tree


def test_streamed_batches_equal_held_batches(tmp_path):
    ds = open_dataset(f"imagefolder:{folder(tmp_path)}", image_size=8, cache=DatasetCacheDir(tmp_path / "c"))
    rows = ds.train.rows
    reader = RowReader(ds.arrays)
    y = torch.from_numpy(ds.train.y)
    streamed = StreamedFeed(reader, rows, y, torch.device("cpu"), prefetch=2)
    held = HeldFeed(torch.from_numpy(np.ascontiguousarray(ds.arrays.images[rows])), y)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(3))
    got_s = [(i.clone(), x.clone()) for i, x in streamed.batches(order, 5)]  # clone: buffers are reused
    got_h = [(i, x) for i, x in held.batches(order, 5)]
    assert len(got_s) == len(got_h) == -(-len(rows) // 5)
    for (i_s, x_s), (i_h, x_h) in zip(got_s, got_h):
        assert torch.equal(i_s, i_h) and torch.equal(x_s, x_h)
    assert torch.equal(torch.cat([x for _, x in got_s]), held.x[order])
    # an early stop (cancel) leaves the feed usable
    for _ in zip(range(2), streamed.batches(order, 5)):
        pass
    assert torch.equal(next(streamed.batches(order, 5))[1], held.x[order[:5]])
    streamed.close()
    reader.close()


def test_rows_are_read_with_preadv_not_the_memory_map(tmp_path):
    ds = open_dataset(f"imagefolder:{folder(tmp_path)}", image_size=8, cache=DatasetCacheDir(tmp_path / "c"))
    reader = RowReader(ds.arrays)
    rows = np.array([5, 3, 4, 0, 17, 16], dtype=np.int64)  # runs of consecutive rows, out of order
    out = np.empty((len(rows), *ds.arrays.row_shape), dtype=np.uint8)
    reader.read(rows, out)
    np.testing.assert_array_equal(out, np.asarray(ds.arrays.images)[rows])
    reader.close()


def test_the_budget_holds_splits_in_order_while_they_fit():
    sizes = {"train": 100, "val": 50, "test": 80}
    assert residency(sizes, 160, "auto") == {"train": True, "val": True, "test": False}
    assert residency(sizes, 90, "auto") == {"train": False, "val": True, "test": False}
    assert residency(sizes, 0, "never") == {"train": True, "val": True, "test": True}
    assert residency(sizes, 10**9, "always") == {"train": False, "val": False, "test": False}
    assert budget(torch.device("cpu"), configured_mb=3) == 3 << 20


def test_the_default_cpu_budget_comes_from_available_memory(tmp_path, monkeypatch):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:    2000000 kB\n")
    assert available_host_bytes(str(info)) == 2000000 * 1024
    import engine.data.stream as stream

    monkeypatch.setattr(stream, "available_host_bytes", lambda: 2_000_000_000)
    assert budget(torch.device("cpu")) == 500_000_000  # a quarter of what is available
    monkeypatch.setattr(stream, "available_host_bytes", lambda: 64 << 30)
    assert budget(torch.device("cpu")) == stream.CPU_CAP


def test_feeds_stream_what_does_not_fit(tmp_path):
    ds = open_dataset(f"imagefolder:{folder(tmp_path)}", image_size=8, cache=DatasetCacheDir(tmp_path / "c"))
    row = ds.arrays.row_bytes
    limit_mb = 1
    out, plan = feeds(ds.arrays, ds.selection.splits(), torch.device("cpu"), limit_mb, "auto")
    assert not any(f.streamed for f in out.values())  # 24 rows of 192 bytes fit in 1 MB
    assert plan.describe().endswith("; device budget 1 MB") and plan.describe().startswith("train held (0 MB)")
    out, plan = feeds(ds.arrays, ds.selection.splits(), torch.device("cpu"), 0, "always")
    assert all(f.streamed for f in out.values())
    assert plan.describe().endswith("test streamed (0 MB); data.stream = always")  # not "device budget 0 MB"
    assert plan.sizes["train"] == len(ds.train) * row
    no_cache = open_dataset(f"imagefolder:{folder(tmp_path)}", image_size=8)
    out, plan = feeds(no_cache.arrays, no_cache.selection.splits(), torch.device("cpu"), 0, "always")
    assert not any(f.streamed for f in out.values())  # decoded in memory: nothing to stream from
    assert plan.describe().endswith("test held (0 MB); decoded in memory (data.cache = false)")


@pytest.mark.parametrize("strategy,augment", [("partial", True), ("frozen", False)])
def test_a_streamed_run_trains_exactly_like_a_held_one(tmp_path, strategy, augment):
    tree = folder(tmp_path, per_class=10)
    runs = {}
    for mode in ("never", "always"):
        rdir = make_run(tmp_path, name=mode, data={"dataset": f"imagefolder:{tree}", "image_size": 16, "batch_size": 7,
                                               "augment": augment, "stream": mode}, strategy=strategy, epochs=2)
        assert worker_main([str(rdir)]) == 0
        runs[mode] = rdir
    assert_same_training(runs["never"], runs["always"], atol=0)
    started = {m: of_type(r, "started")[0] for m, r in runs.items()}
    assert "streamed" in started["always"].data["feed"] and "streamed" not in started["never"].data["feed"]
    assert started["never"].data["cache"] == "built"  # one cache for the store: the first run decoded it
    assert started["always"].data["cache"] == "hit"


def test_a_run_records_its_phases_and_its_total(tmp_path, capsys):
    rdir = make_run(tmp_path, epochs=2)
    assert worker_main([str(rdir)]) == 0
    (finished,) = of_type(rdir, "finished")
    assert set(finished.phases) <= set(PHASES) and {"data", "model", "train", "test"} <= set(finished.phases)
    assert finished.total_seconds >= sum(finished.phases.values()) - 0.01
    assert finished.total_seconds > finished.train_seconds > 0
    results = json.loads((rdir / "results.json").read_text())
    assert results["total_seconds"] >= finished.total_seconds - 0.01 and results["phases"]["train"] > 0
    cpu = results["cpu"]  # in-process here: pytest's own usage so far, at least this run's
    assert cpu["user_seconds"] > 0 and cpu["system_seconds"] >= 0 and cpu["minor_faults"] > 1000
    summary = load_run(rdir).summary
    assert summary.total_seconds == finished.total_seconds and summary.phases == finished.phases
    line = ProgressView({}, plain=True).line("r", finished)
    assert f"in {finished.total_seconds:.0f}s (startup " in line  # in-process here: startup is pytest's age
    assert [e.phase for e in events_of(rdir) if isinstance(e, ev.Progress)][0] in ("decode", "features", "train")


def test_runs_shows_the_total_time(tmp_path, capsys):
    from rich.console import Console

    rdir = make_run(tmp_path, epochs=1)
    assert worker_main([str(rdir)]) == 0
    console = Console(width=160, record=True)
    console.print(runs_table([load_run(rdir)]))
    text = console.export_text()
    assert "time" in text and duration(load_run(rdir).summary.total_seconds) in text


def test_durations_and_the_fold_of_a_finished_event():
    assert (duration(None), duration(4.4), duration(185), duration(3725)) == ("", "4s", "3m05s", "1h02m")
    s = fold(RunSummary(), ev.Progress(phase="decode", step=3, steps=9, ts=100.0))
    assert s.started_at == 100.0 and s.phase == "decode"  # decoding counts as running time
    s = fold(s, ev.Finished(total_seconds=143.0, train_seconds=10.0, phases={"train": 10.0}))
    assert s.total_seconds == 143.0 and s.train_seconds == 10.0
    assert fold(RunSummary(), ev.Finished(train_seconds=9.0)).total_seconds is None  # older workers


def test_phase_times_count_from_the_process_start():
    t = PhaseTimes()
    assert t.seconds.get("startup", 0) > 0  # this interpreter started before the test
    with t.phase("data"):
        pass
    t.add("train", 2.0)
    t.add("train", 1.0)
    assert t.as_dict()["train"] == 3.0 and list(t.as_dict()) == [p for p in PHASES if p in t.as_dict()]
    assert t.total() >= t.seconds["startup"]


def test_the_tui_shows_decode_progress_and_the_total_time():
    from pathlib import Path

    from tests.tui_fixtures import NOW
    from tui.columns import COLUMNS, Context
    from tui.store_watcher import RunState
    from tui.theme import Palette

    ctx = Context(now=NOW, palette=Palette())

    def state(**kw) -> RunState:
        return RunState(key="g/r", path=Path("/x/g/r"), summary=RunSummary(run_id="r", grid="g", **kw))

    decoding = state(status="running", phase="decode", step=1200, steps=20000, started_at=NOW - 30)
    assert COLUMNS["note"].render(decoding, ctx).plain == "decode 1200/20000"
    assert COLUMNS["elapsed"].render(decoding, ctx).plain == "30s"
    done = state(status="done", started_at=NOW - 500, finished_at=NOW - 300, total_seconds=143.0, train_seconds=10.0)
    assert COLUMNS["elapsed"].render(done, ctx).plain == "2m23s"  # the worker's total, not train_seconds
    older = state(status="done", started_at=NOW - 500, finished_at=NOW - 300, train_seconds=10.0)
    assert COLUMNS["elapsed"].render(older, ctx).plain == "3m20s"  # no total recorded: started to finished
