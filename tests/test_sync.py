"""`finetune-tui sync`: the store replayed into TensorBoard and MLflow, read back with their own readers.

TensorBoard's ``EventAccumulator`` and MLflow's ``MlflowClient`` read what was written; a second
sync adds nothing, a run that trained on adds only its new epochs, a lost state file does not
duplicate MLflow runs.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from PIL import Image

from engine import events as ev
from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.store import RunStore, atomic_write_json
from finetune_tui.cli import main
from sync.state import SyncState

from .store_fixtures import add_to_grid, emit, new_run

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

GROUPS = ["stem", "blocks.0", "head"]
RESULTS = {"accuracy": 0.8, "precision_macro": 0.79, "recall_macro": 0.78, "f1_macro": 0.77,
           "precision_weighted": 0.8, "recall_weighted": 0.8, "f1_weighted": 0.8,
           "per_class": {"sandal": {"precision": 0.9, "recall": 0.8, "f1-score": 0.85, "support": 10},
                         "ankle boot": {"precision": 0.7, "recall": 0.7, "f1-score": 0.7, "support": 10}},
           "best_epoch": 2, "epochs_run": 3, "train_seconds": 4.5}


def epoch(i: int) -> ev.Epoch:
    return ev.Epoch(epoch=i, epochs=5, train_loss=1.0 / i, train_acc=0.5 + 0.1 * i, val_loss=0.9 / i,
                    val_acc=0.4 + 0.1 * i, lr=1e-3, lrs={"stem": 0.0, "blocks.0": 1e-4 / i, "head": 1e-3},
                    group_norms={g: 10.0 + i + k for k, g in enumerate(GROUPS)}, img_per_s=100.0 * i,
                    seconds=2.0, trainable=1000, is_best=True, ts=1_700_000_000.0 + 60 * i)


@pytest.fixture
def store(tmp_path):
    """Grid "g": one finished run (3 epochs, results, an export, a report figure) and one still running."""
    cfgs = [RunConfig(data=DataConfig(dataset="footwear", image_size=32),
                      model=ModelConfig(backbone=b, weights="random"),
                      train=TrainConfig(strategy="full", epochs=5, lr=1e-3)) for b in ("test_efficientnet", "resnet50")]
    gdir = add_to_grid(tmp_path, "g", cfgs)
    done, running = (new_run(gdir, c) for c in cfgs)
    started = dict(pid=1, device="cpu", config={}, groups=GROUPS, initial_norms={g: 9.0 for g in GROUPS},
                   ts=1_700_000_000.0)
    emit(done, [ev.Started(run_id=done.run_id, **started), *[epoch(i) for i in (1, 2, 3)],
                ev.Finished(best_epoch=2, epochs_run=3, train_seconds=4.5, test=RESULTS, ts=1_700_000_300.0)])
    done.write_results(RESULTS)
    done.export.path.mkdir()
    done.export.embedded.write_bytes(b"onnx bytes stand-in")
    atomic_write_json(done.export.summary_file, {"status": "ok", "onnx_accuracy": 0.8, "onnx_f1_macro": 0.77,
                                                 "size_mb": 1.5, "parity_max_abs_diff": 1e-6,
                                                 "latency": {"CPUExecutionProvider": {"1": {"p50_ms": 2.0,
                                                                                            "img_per_s": 500.0}}},
                                                 "embedded": {"accuracy": 0.8, "top1_agreement_trainer": 1.0,
                                                              "latency": {}}})
    emit(running, [ev.Started(run_id=running.run_id, **started), epoch(1)])
    gdir.report_dir.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(gdir.report_dir / "final_comparison.png")
    lock = running.lock()  # a live worker: without it the store reads the run as failed
    assert lock.acquire()
    yield {"root": tmp_path, "grid": gdir, "done": done, "running": running}
    lock.release()


def sync(capsys, *args) -> tuple[int, str]:
    code = main(["sync", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


# --- TensorBoard ---------------------------------------------------------------------------------------


def accumulate(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_sync_reads_back_and_adds_only_what_is_new(store, capsys):
    root, done, running = store["root"], store["done"], store["running"]
    code, out = sync(capsys, "tensorboard", "--runs", str(root))
    assert code == 0, out
    logdir = RunStore(root).tensorboard_dir
    assert str(logdir) in out
    acc = accumulate(logdir / "g" / done.run_id)
    val = acc.Scalars("val/acc")
    assert [e.step for e in val] == [1, 2, 3]
    assert [round(e.value, 6) for e in val] == [0.5, 0.6, 0.7]
    assert val[0].wall_time == 1_700_000_060.0
    assert [e.value for e in acc.Scalars("norm/blocks.0")] == [9.0, 12.0, 13.0, 14.0]  # initial norm at step 0
    assert [e.step for e in acc.Scalars("lr/blocks.0")] == [1, 2, 3]
    assert acc.Scalars("lr/blocks.0")[1].value == pytest.approx(5e-5)
    assert acc.Scalars("test/accuracy")[0].value == pytest.approx(0.8)
    assert acc.Scalars("test/accuracy")[0].step == 3
    assert acc.Scalars("test/f1/ankle boot")[0].value == pytest.approx(0.7)
    assert acc.Scalars("onnx/cpu_b1_p50_ms")[0].value == pytest.approx(2.0)
    assert acc.Scalars("onnx_preprocess/top1_agreement_trainer")[0].value == 1.0
    tensors = acc.Tags()["tensors"]
    assert "config" in tensors and "_hparams_/session_start_info" in tensors
    assert "_hparams_/session_end_info" in tensors  # the finished run is closed
    assert "_hparams_/session_end_info" not in accumulate(logdir / "g" / running.run_id).Tags()["tensors"]
    images = accumulate(logdir / "g" / "report").Images("report/final_comparison")
    assert (images[0].width, images[0].height) == (40, 30)

    files = sorted((logdir / "g" / done.run_id).iterdir())
    code, out = sync(capsys, "tensorboard", "g", "--runs", str(root))
    assert code == 0 and "tensorboard g: nothing new" in out
    assert sorted((logdir / "g" / done.run_id).iterdir()) == files  # no new (empty) event file

    emit(running, [epoch(2), epoch(3)])  # the running run trained on
    code, out = sync(capsys, "tensorboard", "--runs", str(root))
    assert "2 epoch(s)" in out
    assert [e.step for e in accumulate(logdir / "g" / running.run_id).Scalars("val/loss")] == [1, 2, 3]
    assert [e.step for e in accumulate(logdir / "g" / done.run_id).Scalars("val/acc")] == [1, 2, 3]
    state = SyncState(store["grid"], f"tensorboard {logdir.resolve()}")
    assert state.run(running.run_id)["epoch"] == 3


def test_tensorboard_resends_to_a_removed_log_folder(store, capsys, tmp_path):
    import shutil

    logdir = tmp_path / "tb"
    sync(capsys, "tensorboard", "--runs", str(store["root"]), "--logdir", str(logdir))
    shutil.rmtree(logdir)
    code, out = sync(capsys, "tensorboard", "--runs", str(store["root"]), "--logdir", str(logdir))
    assert code == 0 and "nothing new" not in out
    assert [e.step for e in accumulate(logdir / "g" / store["done"].run_id).Scalars("val/acc")] == [1, 2, 3]


# --- MLflow --------------------------------------------------------------------------------------------


def client_for(root):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{RunStore(root).mlflow_db.resolve()}")


def mlflow_runs(client, experiment="g"):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return exp, {r.data.tags.get("finetune_tui.run"): r for r in runs}


def test_mlflow_sync_reads_back_and_adds_only_what_is_new(store, capsys):
    root, done, running = store["root"], store["done"], store["running"]
    code, out = sync(capsys, "mlflow", "--runs", str(root))
    assert code == 0, out
    client = client_for(root)
    exp, runs = mlflow_runs(client)
    assert set(runs) == {"g/", f"g/{done.run_id}", f"g/{running.run_id}"}
    parent, child = runs["g/"], runs[f"g/{done.run_id}"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.params["model.backbone"] == "test_efficientnet"
    assert child.data.params["data.image_size"] == "32" and child.data.params["train.lr"] == "0.001"
    assert child.data.tags["finetune_tui.strategy"] == "full"
    assert child.info.status == "FINISHED" and runs[f"g/{running.run_id}"].info.status == "RUNNING"
    history = client.get_metric_history(child.info.run_id, "val/acc")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(1, 0.5), (2, 0.6), (3, 0.7)]
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "norm/head")) == [0, 1, 2, 3]
    assert child.data.metrics["test/f1_macro"] == pytest.approx(0.77)
    assert child.data.metrics["onnx/cpu_b1_p50_ms"] == pytest.approx(2.0)
    exported = [f.path for f in client.list_artifacts(child.info.run_id, "export")]
    assert "export/model.preprocess.onnx" in exported and "export/summary.json" in exported
    assert "run/results.json" in [f.path for f in client.list_artifacts(child.info.run_id, "run")]
    assert [f.path for f in client.list_artifacts(parent.info.run_id, "report")] == ["report/final_comparison.png"]
    assert exp.artifact_location.startswith(RunStore(root).mlflow_artifacts.resolve().as_uri())

    code, out = sync(capsys, "mlflow", "--runs", str(root))
    assert "mlflow g: nothing new" in out
    emit(running, [epoch(2), epoch(3)])
    sync(capsys, "mlflow", "--runs", str(root))
    store["grid"].sync_state_file.unlink()  # a lost state file: runs are found again by their tag
    code, out = sync(capsys, "mlflow", "--runs", str(root))
    assert code == 0
    _, runs = mlflow_runs(client)
    assert len(runs) == 3
    steps = sorted(m.step for m in client.get_metric_history(runs[f"g/{running.run_id}"].info.run_id, "val/loss"))
    assert steps == [1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "val/acc")) == [1, 2, 3]


def test_mlflow_experiment_option_and_uri(store, capsys, tmp_path, monkeypatch):
    # a URI of the user's own keeps MLflow's artifact default, ./mlruns of the working folder: not the checkout's
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    code, out = sync(capsys, "mlflow", "g", "--runs", str(store["root"]), "--tracking-uri", uri,
                     "--experiment", "team")
    assert code == 0, out
    from mlflow import MlflowClient

    _, runs = mlflow_runs(MlflowClient(tracking_uri=uri), "team")
    assert f"g/{store['done'].run_id}" in runs
    assert (tmp_path / "mlruns").is_dir()


# --- the command line without the extras -----------------------------------------------------------


@pytest.mark.parametrize("tracker,module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_tracker_package_says_what_to_install(store, capsys, monkeypatch, tracker, module):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    code, out = sync(capsys, tracker, "--runs", str(store["root"]))
    assert code == 2
    assert out.strip() == (f"finetune-tui: error: `sync {tracker}` needs the {module} package, which is not "
                           f"installed; run: pip install 'finetune-tui[sync]'")


def test_sync_of_an_unknown_grid_is_one_line(store, capsys):
    code, out = sync(capsys, "tensorboard", "nope", "--runs", str(store["root"]))
    assert code == 2 and out.startswith("finetune-tui: error: no grid 'nope'") and len(out.strip().splitlines()) == 1


def test_the_state_file_is_the_stores(store, capsys):
    sync(capsys, "tensorboard", "--runs", str(store["root"]))
    data = json.loads(store["grid"].sync_state_file.read_text())
    assert data["v"] == 1 and any(k.startswith("tensorboard ") for k in data["targets"])
