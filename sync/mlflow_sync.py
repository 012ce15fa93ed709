"""Replay a grid into an MLflow tracking store through ``mlflow.MlflowClient``.

One MLflow experiment per grid (or one named with ``--experiment``), one parent run for the
grid (its report folder and exports table as artifacts) and one nested run per training run:
the config as parameters (``data.image_size``, ``train.lr``, ...), the run's labels as tags,
every epoch's scalars as metrics with the epoch as step (``val/acc``, ``lr/<group>``,
``norm/<group>``), the test results and export figures as metrics, and config, metrics table,
results and the export folder (ONNX files, summary) as artifacts. A finished, failed or
cancelled run is closed as FINISHED, FAILED or KILLED. A later sync sends only what is new
(``sync.state``); runs are also found by their ``finetune_tui.run`` tag, so a lost state file
does not duplicate them.

The default destination is a SQLite file in the run store (``RunStore.mlflow_db``), with the
artifacts beside it: MLflow 3's file store (``./mlruns``) is in maintenance mode and refuses to
open without ``MLFLOW_ALLOW_FILE_STORE=true``, and SQLite is MLflow's own default now. Any
tracking URI works (``http://...``, ``databricks``, ``sqlite:///...``, ``file:...``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path

from engine.store import GridDir, RunStore
from sync.source import RunHistory, report_files, run_histories
from sync.state import Counts, SyncState, file_changed, fingerprint

KIND = "mlflow"
TAG_GRID, TAG_RUN, TAG_KIND = "finetune_tui.grid", "finetune_tui.run", "finetune_tui.kind"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for nested runs
STATUS = {"done": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
_BAD_KEY = re.compile(r"[^\w\-. :/]")  # MLflow keys: alphanumerics, _ - . space : /
MAX_METRICS, MAX_PARAMS = 1000, 100  # per log_batch call


def default_uri(store: RunStore) -> str:
    return f"sqlite:///{store.mlflow_db.resolve()}"


def key(name: str) -> str:
    return _BAD_KEY.sub("_", name)


def _ms(seconds: float | None) -> int:
    return int((seconds or time.time()) * 1000)


def _chunks(items: list, n: int) -> Iterable[list]:
    for start in range(0, len(items), n):
        yield items[start:start + n]


class MlflowTarget:
    """A tracking store and the experiment a grid goes to."""

    def __init__(self, tracking_uri: str, experiment: str | None, artifact_root: Path | None):
        from mlflow import MlflowClient

        for name in ("mlflow", "alembic"):  # schema set-up chatter on a new database
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        location = (self.artifact_root / name).resolve().as_uri() if self.artifact_root else None
        return self.client.create_experiment(name, artifact_location=location, tags={TAG_KIND: "grid"})

    def find_run(self, experiment_id: str, tag_value: str) -> str | None:
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`{TAG_RUN}` = '{tag_value}'",
                                       max_results=1)
        return runs[0].info.run_id if runs else None

    def alive(self, run_id: str | None) -> bool:
        if not run_id:
            return False
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except Exception:  # deleted for good, or another store
            return False


def _open_run(target: MlflowTarget, experiment_id: str, st: dict, tag_value: str, name: str, start: float | None,
              tags: dict[str, str]) -> tuple[str, bool]:
    """The MLflow run for ``tag_value``: the one the state names, else one found by tag, else a new one.
    Returns (run id, found_without_state)."""
    if target.alive(st.get("mlflow_run_id")):
        return st["mlflow_run_id"], False
    st.clear()
    found = target.find_run(experiment_id, tag_value)
    if found:
        st["mlflow_run_id"] = found
        return found, True
    run = target.client.create_run(experiment_id, start_time=_ms(start), tags={TAG_RUN: tag_value, **tags},
                                   run_name=name)
    st["mlflow_run_id"] = run.info.run_id
    return run.info.run_id, False


def _recover(target: MlflowTarget, run_id: str, st: dict) -> None:
    """A run found by its tag but missing from the state: read back what it already holds."""
    data = target.client.get_run(run_id).data
    st["params"] = bool(data.params)
    history = target.client.get_metric_history(run_id, key("val/loss"))
    st["epoch"] = max((m.step for m in history), default=0)
    if key("test/accuracy") in data.metrics:
        st["results"] = "recovered"


def sync_run(target: MlflowTarget, experiment_id: str, parent_id: str, history: RunHistory, st: dict) -> Counts:
    from mlflow.entities import Metric, Param, RunTag

    counts = Counts()
    client = target.client
    tag_value = f"{history.grid}/{history.run_id}"
    tags = {TAG_GRID: history.grid, TAG_KIND: "run", PARENT_TAG: parent_id}
    run_id, found = _open_run(target, experiment_id, st, tag_value, history.run_id, history.started, tags)
    if found:
        _recover(target, run_id, st)
    params = [] if st.get("params") else [Param(key(k), str(v)) for k, v in history.params.items()]
    run_tags = [RunTag(f"finetune_tui.{k}", str(v)) for k, v in history.tags.items()]
    metrics = []
    done = int(st.get("epoch", 0))
    new = [r for r in history.epochs if r.epoch > done]
    for record in new:
        metrics += [Metric(key(k), v, _ms(record.wall_time), record.epoch) for k, v in record.scalars.items()]
    if not st.get("started") and history.initial_norms:
        metrics += [Metric(key(f"norm/{g}"), v, _ms(history.started), 0) for g, v in history.initial_norms.items()]
    figures = {**history.results, **history.export}
    send_figures = bool(figures) and st.get("results") != fingerprint(figures) and st.get("results") != "recovered"
    if send_figures:
        step = history.results_step or (history.epochs[-1].epoch if history.epochs else 0)
        metrics += [Metric(key(k), v, _ms(history.finished), step) for k, v in figures.items()]
    for i, chunk in enumerate(_chunks(metrics, MAX_METRICS) if metrics else [[]]):
        client.log_batch(run_id, metrics=chunk, params=params if i == 0 else [], tags=run_tags if i == 0 else [])
    for chunk in _chunks(params[MAX_PARAMS:], MAX_PARAMS):  # log_batch takes 100 params at a time
        client.log_batch(run_id, params=chunk)
    st["params"] = st["started"] = True
    if new:
        st["epoch"] = new[-1].epoch
        counts.epochs = len(new)
    if send_figures:
        st["results"] = fingerprint(figures)
        counts.results = 1
    memo = st.setdefault("files", {})
    for artifact, path in history.artifacts.items():
        if file_changed(memo, artifact, path):
            client.log_artifact(run_id, str(path), str(Path(artifact).parent))
            counts.files += 1
    if history.final and st.get("closed") != history.status:
        client.set_terminated(run_id, STATUS[history.status], end_time=_ms(history.finished))
        st["closed"] = history.status
        counts.closed = 1
    elif not history.final and st.get("closed"):  # resumed since it was closed
        client.update_run(run_id, status="RUNNING")
        st.pop("closed")
    counts.runs = int(bool(counts.epochs or counts.results or counts.files or counts.closed))
    return counts


def sync_grid(gdir: GridDir, target: MlflowTarget, progress=None) -> Counts:
    """Send what is new in ``gdir`` to the target's experiment; returns what was sent."""
    experiment = target.experiment or gdir.name
    state = SyncState(gdir, f"{KIND} {target.uri} experiment {experiment}")
    experiment_id = target.experiment_id(experiment)
    total = Counts()
    grid_st = state.grid
    parent_id, _ = _open_run(target, experiment_id, grid_st, f"{gdir.name}/", gdir.name, None,
                             {TAG_GRID: gdir.name, TAG_KIND: "grid"})
    histories = []
    for rd, history in run_histories(gdir, total.skipped):
        histories.append(history)
        total.add(sync_run(target, experiment_id, parent_id, history, state.run(rd.run_id)))
        state.save()
        if progress:
            progress(rd.run_id)
    memo = grid_st.setdefault("files", {})
    files = {f"report/{name}": path for name, path in report_files(gdir).items()}
    if gdir.exports_csv.is_file():
        files[f"export/{gdir.exports_csv.name}"] = gdir.exports_csv
    for artifact, path in files.items():
        if file_changed(memo, artifact, path):
            target.client.log_artifact(parent_id, str(path), str(Path(artifact).parent))
            total.files += 1
    if histories and all(h.final for h in histories) and not grid_st.get("closed"):
        target.client.set_terminated(parent_id, "FINISHED")
        grid_st["closed"] = True
    state.save()
    return total
