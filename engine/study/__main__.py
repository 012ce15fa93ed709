"""``python -m engine.study STUDY_DIR``: run a prepared study (what a detached start execs).

The lock is taken before torch is imported, so whoever started this process
sees the study as running within a moment. Exit codes: 0 done or cancelled,
1 failed (status.json says why), 3 another process runs the study.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from engine.store import StudyDir

log = logging.getLogger("engine.study")


def _sigterm(signum, frame):  # the same path as Ctrl-C: the study ends cancelled and stays resumable
    raise KeyboardInterrupt("terminated")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sdir = StudyDir(Path(argv[0]))
    lock = sdir.lock()
    if not lock.acquire():
        log.error("study %s is already running", sdir.path)
        return 3
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        from engine.study.runner import StudyRunner

        def echo(line: str, status) -> None:
            if line:
                log.info("%s", line)

        status = StudyRunner(sdir, echo=echo).run(lock)
    except Exception as exc:  # an unreadable study.json: say it in the log, exit 1
        log.error("study %s could not run: %s", sdir.path, exc)
        return 1
    finally:
        lock.release()
    return 0 if status.status in ("done", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
