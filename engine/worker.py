"""A training worker: ``python -m engine.worker RUN_DIR``.

Prints events (JSON lines) and nothing else on stdout; logs and tracebacks go
to stderr (the orchestrator points it at worker.log). Holds ``run.lock`` for
its whole life, so anyone can tell a live run from a dead one.

Exit codes: 0 done or cancelled, 1 failed, 3 another worker holds the run.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from pathlib import Path

from engine import events as ev
from engine.store import FileLock

log = logging.getLogger("engine.worker")

USER_ERRORS = ("DataError", "WeightsError", "UnknownBackbone", "ConfigError", "CheckpointError")


def _sigterm(signum, frame):  # turn SIGTERM into the same path as Ctrl-C
    raise KeyboardInterrupt("terminated")


def classify(exc: BaseException, cfg) -> tuple[str, str]:
    """(kind, one-line message) for a failed run."""
    import torch

    name = type(exc).__name__
    if name in USER_ERRORS or isinstance(exc, ValueError) and "not found" in str(exc):
        return "user", str(exc).splitlines()[0]
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        bs, size = cfg.data.batch_size, cfg.data.image_size
        return "oom", (f"out of GPU memory at batch size {bs}, image size {size}: "
                       f"lower --batch-size (try {max(1, bs // 2)}) or --image-size, or lower --concurrency")
    if isinstance(exc, MemoryError):
        return "oom", "out of host memory: lower --batch-size or --concurrency, or use a smaller dataset"
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return "crash", f"{name}: {first} (full traceback in traceback.txt)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.worker RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    lock = FileLock(run_dir / "run.lock")
    if not lock.acquire():
        log.error("%s is already being trained by another worker", run_dir)
        return 3
    signal.signal(signal.SIGTERM, _sigterm)
    from engine.run_writer import RunWriter

    writer = RunWriter(run_dir)
    cfg = None
    try:
        import torch

        from engine.config import RunConfig
        from engine.store import read_json
        from engine.trainer import Cancel, Trainer

        cfg = RunConfig.from_dict(read_json(run_dir / "config.json"), str(run_dir / "config.json"))
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        trainer = Trainer(cfg, run_dir, writer)
        trainer.setup()
        trainer.run()
        return 0
    except (KeyboardInterrupt, Cancel) as exc:
        reason = str(exc) or "interrupted"
        writer.emit(ev.Cancelled(reason=reason, epoch=writer.summary.epoch))
        return 0
    except BaseException as exc:  # every failure ends as one event a user can read
        tb = traceback.format_exc()
        (run_dir / "traceback.txt").write_text(tb, encoding="utf-8")
        log.error("run failed:\n%s", tb)
        kind, message = classify(exc, cfg) if cfg is not None else ("user", str(exc).splitlines()[0])
        writer.emit(ev.Failed(error=message, kind=kind, traceback_file="traceback.txt"))
        return 1
    finally:
        writer.close()
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
