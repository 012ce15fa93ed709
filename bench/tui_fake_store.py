"""Build a fixture run store, optionally keep simulated runs streaming into it, optionally open the TUI on it.

    python bench/tui_fake_store.py --root /tmp/store --scenario mixed --stream --app

Simulated workers hold their run's lock like real ones and append Epoch events
(``engine.events``) through the store's ``RunWriter``, as a worker does; no torch is involved. Useful to
look at the TUI by hand (tmux) and for the benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tui_fixtures as fx  # noqa: E402

from engine import events as ev  # noqa: E402
from engine.store import FileLock, RunDir  # noqa: E402

SCENARIOS = {
    "finished": fx.store_finished,
    "running": fx.store_running,
    "failed": fx.store_failed,
    "empty": fx.store_empty,
    "mixed": fx.store_mixed,
}


class Streamer:
    """Simulated workers: each live run gets an Epoch event every ``period`` seconds until its last epoch."""

    def __init__(self, run_dirs: list[Path], period: float, epochs: int = 12, finish: bool = True):
        self.run_dirs = run_dirs
        self.period = period
        self.epochs = epochs
        self.finish = finish
        self.stop = threading.Event()
        self.written: list[tuple[str, int, float]] = []  # (run key, epoch, wall time written)
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "Streamer":
        self.thread.start()
        return self

    def _loop(self) -> None:
        epoch = {d: 0 for d in self.run_dirs}
        while not self.stop.is_set():
            for d in self.run_dirs:
                if epoch[d] >= self.epochs:
                    continue
                epoch[d] += 1
                e = epoch[d]
                now = time.time()
                events: list[ev.Event] = [fx.next_epoch(d, e, self.epochs, 0.5 + 0.4 * (1 - 0.7 ** e), now)]
                if e == self.epochs and self.finish:
                    events.append(ev.Finished(ts=now, best_epoch=e, epochs_run=e, train_seconds=30.0 * e,
                                              test={"accuracy": 0.8, "f1_macro": 0.79}))
                fx.append_events(d, events)
                self.written.append((f"{d.parent.name}/{d.name}", e, time.time()))
            self.stop.wait(self.period)


def live_runs(root: Path, n: int, grid: str = "stream") -> tuple[list[Path], list[FileLock]]:
    """``n`` freshly started runs (Started event written, locks held) in a grid of their own."""
    runs = [fx.run_config(d, b, s, 12) for d in fx.CLASSES for b in ("efficientnet_lite0", "resnet50", "vgg16")
            for s in ("frozen", "partial", "full")][:n]
    gdir = fx.write_grid(root, grid, runs)
    dirs, locks = [], []
    for cfg in runs:
        d = fx.write_run(gdir, cfg, "running", epochs_done=0, start=time.time())
        locks.append(fx.hold_lock(RunDir(d).lock_file))
        dirs.append(d)
    return dirs, locks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="mixed")
    p.add_argument("--big", type=int, default=0, help="also write a store of this many finished runs")
    p.add_argument("--stream", type=int, default=0, help="this many simulated live runs")
    p.add_argument("--period", type=float, default=2.0, help="seconds between epochs of a simulated run")
    p.add_argument("--app", action="store_true", help="open the TUI on the store (else hold locks until Ctrl-C)")
    args = p.parse_args()
    root = Path(args.root)
    store = SCENARIOS[args.scenario](root)
    if args.big:
        fx.store_big(root, args.big)
    streamer = None
    if args.stream:
        dirs, locks = live_runs(root, args.stream)
        store.locks += locks
        streamer = Streamer(dirs, args.period).start()
    try:
        if args.app:
            from tui.app import FinetuneApp

            FinetuneApp(root).run()
        else:
            print(f"store in {root}; holding {len(store.locks)} locks; Ctrl-C to stop", flush=True)
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        if streamer:
            streamer.stop.set()
        store.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
