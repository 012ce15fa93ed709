"""A training worker: ``python -m engine.worker RUN_DIR``.

Prints events (JSON lines) and nothing else on stdout; logs and tracebacks go
to stderr (the orchestrator points it at worker.log). Holds ``run.lock`` for
its whole life, so anyone on its host can tell a live run from a dead one, and
beats ``heartbeat.json`` for hosts a flock doesn't reach (``engine.store.heartbeat``).

Exit codes: 0 done or cancelled, 1 failed (a failed event says why), 3 another
worker holds the run, 4 the disk is full and not even the failed event could
be written (the orchestrator records it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from pathlib import Path

from engine import events as ev
from engine.errors import DiskFull, StoreError
from engine.store import RunDir, RunWriter
from engine.store.heartbeat import Heartbeater

log = logging.getLogger("engine.worker")

EXIT_DONE, EXIT_FAILED, EXIT_BUSY, EXIT_DISK_FULL = 0, 1, 3, 4


_stopping = False


def _stop_signal(signum, frame):
    """SIGTERM takes the same path as Ctrl-C, once: Ctrl-C reaches the worker and its orchestrator's SIGTERM
    follows, often before the first has been handled (both pending at once); a second KeyboardInterrupt
    inside the first one's handling would turn a cancel into a crash."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise KeyboardInterrupt("terminated" if signum == signal.SIGTERM else "interrupted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.worker", description="train one run folder")
    parser.add_argument("run_dir")
    parser.add_argument("--device", help="device inside this process, overriding the config's (the launcher "
                                         "pins a GPU with CUDA_VISIBLE_DEVICES and passes cuda:0)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from engine.speed import keep_freed_memory

    keep_freed_memory()  # before torch allocates anything: glibc keeps freed activations for the next step
    rd = RunDir(Path(args.run_dir))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    lock = rd.lock()
    if not lock.acquire():
        log.error("%s is already being trained by another worker", rd.path)
        return EXIT_BUSY
    signal.signal(signal.SIGTERM, _stop_signal)
    signal.signal(signal.SIGINT, _stop_signal)
    beat = Heartbeater(rd.heartbeat_file).start()
    writer = None
    cfg = None
    try:
        writer = RunWriter(rd)
        cfg = rd.config()
        from engine.trainer import Trainer

        trainer = Trainer(cfg, rd, writer, device=args.device)
        trainer.setup()
        trainer.run()
        return EXIT_DONE
    except BaseException as exc:  # every ending is one event a user can read
        _ignore_stop_signals()  # Ctrl-C reaches the worker and its orchestrator's SIGTERM follows: end once
        return _end(rd, writer, exc, cfg)
    finally:
        if writer is not None:
            writer.close()
        beat.stop()
        lock.release()


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _end(rd: RunDir, writer: RunWriter | None, exc: BaseException, cfg) -> int:
    from engine.failures import classify
    from engine.trainer import Cancel

    if isinstance(exc, (KeyboardInterrupt, Cancel)):
        event: ev.Event = ev.Cancelled(reason=str(exc) or "interrupted", epoch=writer.summary.epoch if writer else 0)
        code = EXIT_DONE
    else:
        tb = traceback.format_exc()
        log.error("run failed:\n%s", tb)
        failure = classify(exc, rd.path, cfg.data.batch_size if cfg else None, cfg.data.image_size if cfg else None)
        tb_file, message = "", failure.message
        if failure.kind == "crash":
            try:
                rd.write_traceback(tb)
                tb_file = rd.TRACEBACK
            except (OSError, StoreError):  # DiskFull is a StoreError: the traceback is only in worker.log then
                message = message.replace(f"in {rd.TRACEBACK})", f"in {rd.WORKER_LOG})")
        event = ev.Failed(error=message, kind=failure.kind, traceback_file=tb_file)
        code = EXIT_FAILED
    if writer is None:
        return EXIT_DISK_FULL if isinstance(exc, DiskFull) else EXIT_FAILED
    try:
        writer.emit(event)
    except (OSError, StoreError) as second:  # DiskFull included: the orchestrator writes the final event for us
        log.error("could not record the run's end (%s): %s", type(event).__name__, second)
        return EXIT_DISK_FULL
    return code


if __name__ == "__main__":
    sys.exit(main())
