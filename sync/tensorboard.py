"""Replay a grid into TensorBoard event files, with TensorBoard's own writer and protos.

``<logdir>/<grid>/<run_id>/`` holds one TensorBoard run per training run: every epoch's
scalars (``train/loss``, ``val/acc``, ``lr``, ``lr/<group>``, ``norm/<group>`` with the
initial norms at step 0, speed), the config as HParams (the HParams dashboard compares runs
by them) and as text, the test results (``test/...``, at the last epoch) and the export's
figures (``onnx/...``). ``<logdir>/<grid>/report/`` holds the report's figures as images.
Event files are written by ``tensorboard.summary.writer.event_file_writer.EventFileWriter``
(what torch.utils.tensorboard uses underneath), without torch or TensorFlow. A later sync
writes a new event file with only what is new (``sync.state``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.store import GridDir
from sync.source import RunHistory, report_files, run_histories
from sync.state import Counts, SyncState, file_changed, fingerprint

KIND = "tensorboard"
REPORT_RUN = "report"  # <logdir>/<grid>/report: not a run id (run ids are dataset__backbone__strategy)


class _Writer:
    """An event file opened on first use, so a sync with nothing new leaves no empty file behind."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self._writer = None

    def summary(self, summary, step: int, wall_time: float | None = None) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if self._writer is None:
            self._writer = EventFileWriter(str(self.logdir))
        self._writer.add_event(event_pb2.Event(summary=summary, step=int(step),
                                               wall_time=wall_time if wall_time else time.time()))

    def scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                                             for k, v in sorted(values.items())])
        self.summary(summary, step, wall_time)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _text(tag: str, text: str):
    from tensorboard.plugins.text.summary_v2 import text_pb

    return text_pb(tag, text)


def _hparams_start(history: RunHistory):
    """The HParams plugin's session-start summary (what its dashboard reads), built from its own protos."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionStartInfo(group_name=history.run_id, start_time_secs=history.started or time.time())
    for name, value in {**history.params, **{f"tag.{k}": v for k, v in history.tags.items() if k != "status"}}.items():
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = value
        elif value is not None:
            info.hparams[name].string_value = value if isinstance(value, str) else json.dumps(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=info, version=metadata.PLUGIN_DATA_VERSION)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=metadata.SESSION_START_INFO_TAG, metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR)])


def _hparams_end(history: RunHistory):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    # the plugin has no "aborted": a cancelled run ends UNKNOWN
    status = {"done": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE,
              "cancelled": api_pb2.STATUS_UNKNOWN}.get(history.status, api_pb2.STATUS_UNKNOWN)
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=history.finished or time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=info, version=metadata.PLUGIN_DATA_VERSION)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR)])


def _image(tag: str, path: Path):
    from PIL import Image
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.image import metadata

    with Image.open(path) as im:
        width, height = im.size
    image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4,
                                      encoded_image_string=path.read_bytes())
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, image=image, metadata=metadata.create_summary_metadata(display_name=tag, description=""))])


def _has_events(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("events.out.tfevents.*"))


def sync_run(history: RunHistory, folder: Path, st: dict) -> Counts:
    counts = Counts()
    if st and not _has_events(folder):
        st.clear()  # the log folder was removed since: send everything again
    w = _Writer(folder)
    try:
        if not st.get("started"):
            if history.initial_norms:
                w.scalars({f"norm/{g}": v for g, v in history.initial_norms.items()}, 0, history.started)
            w.summary(_hparams_start(history), 0, history.started)
            w.summary(_text("config", "```\n" + json.dumps(history.params, indent=1) + "\n```"), 0, history.started)
            st["started"] = True
        done = int(st.get("epoch", 0))
        for record in history.epochs:
            if record.epoch > done:
                w.scalars(record.scalars, record.epoch, record.wall_time)
                st["epoch"] = record.epoch
                counts.epochs += 1
        figures = {**history.results, **history.export}
        if figures and st.get("results") != fingerprint(figures):
            step = history.results_step or (history.epochs[-1].epoch if history.epochs else 0)
            w.scalars(figures, step, history.finished)
            st["results"] = fingerprint(figures)
            counts.results += 1
        if history.final and st.get("closed") != history.status:
            w.summary(_hparams_end(history), history.results_step, history.finished)
            st["closed"] = history.status
            counts.closed += 1
    finally:
        w.close()
    counts.runs = int(bool(counts.epochs or counts.results or counts.closed))
    return counts


def sync_grid(gdir: GridDir, logdir: Path, progress=None) -> Counts:
    """Send what is new in ``gdir`` to ``logdir`` (``<logdir>/<grid>/...``); returns what was sent."""
    logdir = Path(logdir).resolve()
    state = SyncState(gdir, f"{KIND} {logdir}")
    total = Counts()
    for rd, history in run_histories(gdir, total.skipped):
        total.add(sync_run(history, logdir / gdir.name / rd.run_id, state.run(rd.run_id)))
        state.save()
        if progress:
            progress(rd.run_id)
    report = logdir / gdir.name / REPORT_RUN
    memo = state.grid.setdefault("report", {})
    if memo and not _has_events(report):
        memo.clear()
    w = _Writer(report)
    try:
        for name, path in report_files(gdir).items():
            if path.suffix.lower() == ".png" and file_changed(memo, name, path):
                memo[f"{name}#step"] = step = int(memo.get(f"{name}#step", -1)) + 1
                w.summary(_image(f"report/{path.stem}", path), step, path.stat().st_mtime)
                total.files += 1
    finally:
        w.close()
    state.save()
    return total
