"""Hand-made run stores for the export and report tests, written through the store's own writers.

Nothing here spells a store file name: grids go through ``GridDir.write_info``,
events through ``RunWriter`` (which also keeps the run's summary), and every
other file through the ``RunDir`` writers, so a fixture store is laid out
exactly as the engine lays out a real one.
"""

from __future__ import annotations

from pathlib import Path

from engine import events as ev
from engine.config import GridConfig, RunConfig
from engine.store import GridDir, RunDir, RunWriter


def add_to_grid(root: Path | str, name: str, runs: list[RunConfig]) -> GridDir:
    """Create the grid (or add ``runs`` to it): its info lists every run id given so far, in order."""
    gdir = GridDir(Path(root) / name)
    gdir.path.mkdir(parents=True, exist_ok=True)
    ids = gdir.run_ids() if gdir.exists() else []
    ids += [r.run_id for r in runs if r.run_id not in ids]
    configs = [gdir.run(i).config() for i in ids if gdir.run(i).config_file.exists()] + runs
    grid = GridConfig(name=name, datasets=tuple(dict.fromkeys(c.data.dataset for c in configs)),
                      backbones=tuple(dict.fromkeys(c.model.backbone for c in configs)),
                      strategies=tuple(dict.fromkeys(c.train.strategy for c in configs)),
                      base=configs[0] if configs else RunConfig())
    gdir.write_info(grid, ids)
    return gdir


def emit(rd: RunDir, events: list[ev.Event]) -> None:
    """Append ``events`` to the run's event stream and fold them into its summary, as a worker does."""
    writer = RunWriter(rd, echo=False)
    try:
        for event in events:
            writer.emit(event)
    finally:
        writer.close()


def new_run(gdir: GridDir, cfg: RunConfig) -> RunDir:
    """The run's folder with its config written (the orchestrator's part)."""
    rd = gdir.run(cfg.run_id)
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.write_config(cfg)
    return rd


def finished_events(cfg: RunConfig, val_accs: list[float], val_losses: list[float], test: dict | None = None,
                    groups: list[str] = (), initial_norms: dict | None = None) -> list[ev.Event]:
    """started, one epoch event per (val_acc, val_loss), finished at the lowest-val-loss epoch."""
    epochs = len(val_accs)
    best = min(range(epochs), key=lambda i: (val_losses[i], i)) + 1
    out: list[ev.Event] = [ev.Started(run_id=cfg.run_id, pid=1, device="cpu", device_name="test cpu",
                                      versions={"torch": "x"}, config=cfg.to_dict(), groups=list(groups),
                                      initial_norms=dict(initial_norms or {}))]
    lowest = float("inf")
    for i, (acc, loss) in enumerate(zip(val_accs, val_losses), 1):
        out.append(ev.Epoch(epoch=i, epochs=cfg.train.epochs, train_loss=1.0 / i, train_acc=0.5, val_loss=loss,
                            val_acc=acc, is_best=loss < lowest))
        lowest = min(lowest, loss)
    out.append(ev.Finished(best_epoch=best, epochs_run=epochs, train_seconds=12.5, test=dict(test or {})))
    return out
