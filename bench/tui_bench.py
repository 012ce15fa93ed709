"""TUI benchmarks: opening a 500-run store, and staying responsive while runs stream events.

    .venv/bin/python bench/tui_bench.py [--runs 500] [--stream 8] [--period 0.25] [--repeats 5]

Each section compares two things measured in the same process and prints the ratio:

1. first load of the store: the watcher's fast path (summary.json) vs folding every
   events.jsonl from scratch (what the store would cost without summaries);
2. one poll of an unchanged store: the incremental watcher (stat calls only) vs a full
   re-read through ``RunStore.runs()``;
3. the app, headless (Textual's own test driver, no terminal I/O): time until all rows
   are in the table (vs the same app on an empty store), event-to-table latency while
   simulated runs stream Epoch events, and key-press latency (``j`` until the cursor
   moved) idle vs while streaming.

Figures are medians over ``--repeats`` unless said otherwise; provenance is printed
first and last (CPU, cores, load average, versions), because this machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import tui_fixtures as fx  # noqa: E402
from tui_fake_store import Streamer, live_runs  # noqa: E402

from engine.store import RunStore, RunSummary, fold  # noqa: E402
from tui.store_watcher import StoreWatcher  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def provenance() -> str:
    return (f"device: {cpu_name()}, {os.cpu_count()} cores, load average {load_average()}\n"
            f"python {platform.python_version()}, textual {version('textual')}, rich {version('rich')}, "
            f"textual-plotext {version('textual-plotext')}, {platform.platform()}")


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def naive_load(root: Path) -> int:
    """Fold every run's whole event stream (no stored summary)."""
    n = 0
    store = RunStore(root)
    for grid in store.grids():
        for rd in store.grid(grid).run_dirs():
            cfg = rd.config_dict()
            s = RunSummary(run_id=rd.run_id, grid=grid, dataset=cfg["data"]["dataset"])
            events, _ = rd.events()
            for e in events:
                fold(s, e)
            n += 1
    return n


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def open_time(root: Path, rows: int) -> tuple[float, float, float]:
    """(first rows shown, all ``rows`` shown, CPU seconds of the process) from creating the app.

    The CPU time counts every thread of this process: what the open costs on an idle core,
    whatever else the machine runs.
    """
    from tui.app import FinetuneApp
    from tui.widgets.runs_table import RunsTable

    t0, c0 = time.perf_counter(), time.process_time()
    first = None
    app = FinetuneApp(root)
    async with app.run_test(size=(120, 40)) as pilot:
        while True:
            table = app.screen.query(RunsTable).first() if app.screen.query(RunsTable) else None
            count = table.row_count if table is not None and app.snapshot is not None else -1
            if first is None and (count > 0 or (rows == 0 and count == 0)):
                first = time.perf_counter() - t0
            if count >= rows:
                break
            await pilot.pause(0.005)
        await pilot.pause(0)  # let the frame with the rows be drawn
        return first, time.perf_counter() - t0, time.process_time() - c0


async def live_figures(root: Path, stream: int, period: float, presses: int) -> dict:
    from tui.app import FinetuneApp
    from tui.widgets.runs_table import RunsTable

    out: dict = {}
    app = FinetuneApp(root)
    async with app.run_test(size=(120, 40)) as pilot:
        while not (app.snapshot is not None and app.screen.query(RunsTable) and app.screen.query_one(RunsTable).row_count):
            await pilot.pause(0.01)
        table = app.screen.query_one(RunsTable)
        await pilot.pause(0.5)

        async def press_latency(count: int) -> list[float]:
            lat = []
            for i in range(count):
                row = table.cursor_row
                t = time.perf_counter()
                await pilot.press("j" if row % 2 == 0 else "k")
                while table.cursor_row == row:
                    await pilot.pause(0.001)
                lat.append(time.perf_counter() - t)
                await pilot.pause(0.05)
            return lat

        out["press_idle"] = await press_latency(presses)
        dirs, locks = live_runs(root, stream)
        keys = [f"stream/{d.name}" for d in dirs]
        seen: dict[tuple[str, int], float] = {}
        show = table.show

        def show_and_record(*a, **kw):
            # when does the table first hold each written epoch? (the paint follows on the next frame)
            show(*a, **kw)
            now = time.time()
            for key in keys:
                try:
                    text = table.cell_text(key, "epoch")
                except Exception:
                    continue
                if text[:1].isdigit():
                    seen.setdefault((key, int(text.split("/")[0])), now)

        table.show = show_and_record
        streamer = Streamer(dirs, period, epochs=10_000, finish=False).start()
        try:
            await pilot.pause(1.0)  # the new grid shows up, its rows are added
            written_before = len(streamer.written)
            end = time.perf_counter() + max(5.0, 20 * period)
            press_stream: list[float] = []
            while time.perf_counter() < end:
                if len(press_stream) < presses:
                    press_stream += await press_latency(1)
                await pilot.pause(0.05)
            written = list(streamer.written)[written_before:]
        finally:
            streamer.stop.set()
            for lock in locks:
                lock.release()
        out["lag"] = [seen[(k, e)] - t for k, e, t in written if (k, e) in seen]
        out["written"] = len(written)
        out["press_stream"] = press_stream
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--stream", type=int, default=8, help="simulated live runs")
    p.add_argument("--period", type=float, default=0.25, help="seconds between epochs of each live run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--presses", type=int, default=20)
    args = p.parse_args()

    print(provenance())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        empty = Path(tmp) / "empty"
        fx.store_empty(empty)
        t = time.perf_counter()
        fx.store_big(root, args.runs)
        print(f"\nstore: {args.runs} finished runs (10 epochs each, half exported), written in "
              f"{time.perf_counter() - t:.1f} s")

        print("\n1. first load of the store")
        fast = timed(lambda: StoreWatcher(root).poll(), args.repeats)
        slow = timed(lambda: naive_load(root), args.repeats)
        print(f"   watcher, summary.json fast path: {ms(statistics.median(fast))}")
        print(f"   fold every events.jsonl:          {ms(statistics.median(slow))}")
        print(f"   ratio: {statistics.median(slow) / statistics.median(fast):.1f}x faster")

        print("\n2. one poll of an unchanged store (every 0.3 s in the app)")
        watcher = StoreWatcher(root)
        watcher.poll()
        inc = timed(watcher.poll, args.repeats * 4)
        full = timed(lambda: RunStore(root).runs(), args.repeats)
        print(f"   incremental watcher (stats only):  {ms(statistics.median(inc))}")
        print(f"   RunStore.runs() full re-read:      {ms(statistics.median(full))}")
        print(f"   ratio: {statistics.median(full) / statistics.median(inc):.1f}x cheaper")

        print("\n3. the app, headless at 120x40")
        big = [asyncio.run(open_time(root, args.runs)) for _ in range(args.repeats)]
        base = [asyncio.run(open_time(empty, 0)) for _ in range(args.repeats)]

        def med(values, i):
            return statistics.median(v[i] for v in values)

        print(f"   open a store of {args.runs} runs: first rows on screen {ms(med(big, 0))}, all {args.runs} rows "
              f"{ms(med(big, 1))} (min {ms(min(v[1] for v in big))}, max {ms(max(v[1] for v in big))}); "
              f"CPU {ms(med(big, 2))}")
        print(f"   open an empty store (app start-up alone): {ms(med(base, 1))}; CPU {ms(med(base, 2))}")
        print(f"   ratio {args.runs} runs / empty: wall {med(big, 1) / med(base, 1):.2f}x, CPU {med(big, 2) / med(base, 2):.2f}x")
        print(f"\n   then {args.stream} live runs writing an epoch every {args.period} s each "
              f"({args.stream / args.period:.0f} events/s)")
        figs = asyncio.run(live_figures(root, args.stream, args.period, args.presses))
        lag = figs["lag"]
        if lag:
            print(f"   event to table, {len(lag)} of {figs['written']} events (the rest were overtaken by the "
                  f"next epoch before a poll): p50 {ms(statistics.median(lag))}, p95 {ms(pct(lag, 0.95))}, "
                  f"max {ms(max(lag))}")
        idle, busy = figs["press_idle"], figs["press_stream"]
        print(f"   key press to cursor moved, idle:      p50 {ms(statistics.median(idle))}, "
              f"p95 {ms(pct(idle, 0.95))} (n={len(idle)})")
        if busy:
            print(f"   key press to cursor moved, streaming: p50 {ms(statistics.median(busy))}, "
                  f"p95 {ms(pct(busy, 0.95))} (n={len(busy)})")
            print(f"   ratio streaming/idle (p50): {statistics.median(busy) / statistics.median(idle):.2f}x")
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
