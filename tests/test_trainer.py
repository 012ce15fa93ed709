"""A real run, in-process, on scikit-learn's digits with a tiny timm model."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from engine import events as ev
from engine.checkpoint import load_classifier, read_metadata
from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.store import atomic_write_json, load_run
from engine.worker import main as worker_main


def make_run(tmp_path, name="r", **train):
    cfg = RunConfig(
        data=DataConfig(dataset="digits", image_size=32, batch_size=64),
        model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
        train=TrainConfig(**{"strategy": "frozen", "epochs": 3, "threads": 1, **train}),
    )
    rdir = tmp_path / "grid" / name
    atomic_write_json(rdir / "config.json", cfg.to_dict())
    return rdir


def events_of(rdir):
    return ev.read_events(rdir / "events.jsonl")[0]


def test_run_writes_every_store_file_with_consistent_values(tmp_path):
    rdir = make_run(tmp_path, strategy="partial", epochs=3, lr=3e-3)
    assert worker_main([str(rdir)]) == 0
    evs = events_of(rdir)
    kinds = [e.type for e in evs if e.type != "progress"]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("epoch") == 3
    started = evs[0]
    assert started.data["classes"] == [str(i) for i in range(10)] and started.weights["source"] == "random"
    assert started.groups[-1] == "head" and set(started.initial_norms) == set(started.groups)
    epochs = [e for e in evs if e.type == "epoch"]
    # partial: frozen groups keep their norm, the trained tail moves
    first_group, last_group = started.groups[0], started.groups[-2]
    assert epochs[-1].group_norms[first_group] == pytest.approx(started.initial_norms[first_group], rel=1e-6)
    assert epochs[-1].group_norms[last_group] != pytest.approx(started.initial_norms[last_group], rel=1e-6)
    assert epochs[-1].lrs[first_group] == 0.0 and epochs[-1].lrs[last_group] == pytest.approx(3e-3)
    metrics = pd.read_csv(rdir / "metrics.csv")
    assert list(metrics.epoch) == [1, 2, 3]
    assert metrics.val_acc.tolist() == pytest.approx([e.val_acc for e in epochs])
    assert f"norm:{last_group}" in metrics.columns
    # results agree with the saved probabilities
    res = json.loads((rdir / "results.json").read_text())
    npz = np.load(rdir / "test_probs.npz")
    assert npz["probs"].shape == (res["n_test"], 10)
    assert np.allclose(npz["probs"].sum(1), 1, atol=1e-4)
    assert res["accuracy"] == pytest.approx((npz["preds"] == npz["labels"]).mean())
    cm = np.array(res["confusion_matrix"])
    assert cm.sum() == res["n_test"] and np.trace(cm) == round(res["accuracy"] * res["n_test"])
    errs = res["top_errors"]
    assert len(errs) == min(20, res["n_test"] - np.trace(cm))
    confs = [e["confidence"] for e in errs]
    assert confs == sorted(confs, reverse=True)
    wrong = npz["probs"].max(1)[npz["preds"] != npz["labels"]]
    assert confs[0] == pytest.approx(wrong.max()) and confs[-1] >= np.sort(wrong)[-min(20, len(wrong))]
    assert res["accuracy"] > 0.3  # 3 epochs on digits learns something (chance is 0.1)
    # the best checkpoint carries what deployment needs and reloads
    meta = read_metadata(rdir / "best.safetensors")
    assert meta["classes"] == [str(i) for i in range(10)] and meta["image_size"] == 32
    assert meta["epoch"] == res["best_epoch"] and meta["in_chans_source"] == 1
    model, _ = load_classifier(rdir / "best.safetensors")
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    s = load_run(rdir).summary
    assert s.status == "done" and s.test_accuracy == res["accuracy"]


def test_frozen_cache_matches_uncached_training(tmp_path):
    """Features computed once give the same run as running the backbone every epoch."""
    a = make_run(tmp_path, "cached", strategy="frozen", epochs=2)
    b = make_run(tmp_path, "uncached", strategy="frozen", epochs=2, cache_features=False)
    assert worker_main([str(a)]) == 0 and worker_main([str(b)]) == 0
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    va = [e.val_loss for e in events_of(a) if e.type == "epoch"]
    vb = [e.val_loss for e in events_of(b) if e.type == "epoch"]
    assert va == pytest.approx(vb, rel=1e-4)
    assert ra["accuracy"] == pytest.approx(rb["accuracy"], abs=1e-3)


def test_early_stopping_keeps_best_weights(tmp_path):
    # a learning rate this high makes val loss blow up after the first epochs
    rdir = make_run(tmp_path, strategy="full", epochs=12, lr=0.5, patience=2, plateau_patience=10)
    assert worker_main([str(rdir)]) == 0
    evs = events_of(rdir)
    stop = [e for e in evs if e.type == "early_stop"]
    epochs = [e for e in evs if e.type == "epoch"]
    assert stop and stop[0].epoch == len(epochs) < 12
    best = min(epochs, key=lambda e: e.val_loss)
    assert stop[0].best_epoch == best.epoch == stop[0].epoch - 2
    assert read_metadata(rdir / "best.safetensors")["epoch"] == best.epoch
    assert json.loads((rdir / "results.json").read_text())["early_stopped"] is True


def test_resume_continues_from_last_checkpoint(tmp_path):
    rdir = make_run(tmp_path, strategy="partial", epochs=2)
    assert worker_main([str(rdir)]) == 0
    first = [e.val_loss for e in events_of(rdir) if e.type == "epoch"]
    # extend the run: the same folder with more epochs resumes after epoch 2
    cfg = json.loads((rdir / "config.json").read_text())
    cfg["train"]["epochs"] = 3
    atomic_write_json(rdir / "config.json", cfg)
    assert worker_main([str(rdir)]) == 0
    started = [e for e in events_of(rdir) if e.type == "started"]
    assert [s.resumed_from_epoch for s in started] == [0, 2]
    metrics = pd.read_csv(rdir / "metrics.csv")
    assert list(metrics.epoch) == [1, 2, 3]
    assert metrics.val_loss[:2].tolist() == pytest.approx(first)
    assert load_run(rdir).summary.val_acc_history == pytest.approx(metrics.val_acc.tolist())


def test_tampered_resume_state_restarts_cleanly(tmp_path):
    rdir = make_run(tmp_path, strategy="frozen", epochs=1)
    assert worker_main([str(rdir)]) == 0
    (rdir / "last_state.pt").write_bytes(b"\x80\x04garbage")
    cfg = json.loads((rdir / "config.json").read_text())
    cfg["train"]["epochs"] = 2
    atomic_write_json(rdir / "config.json", cfg)
    assert worker_main([str(rdir)]) == 0
    started = [e for e in events_of(rdir) if e.type == "started"]
    assert started[-1].resumed_from_epoch == 0
    assert load_run(rdir).summary.status == "done"


@pytest.mark.parametrize("strategy", ["gradual", "discriminative"])
def test_staged_and_layerwise_strategies_run(tmp_path, strategy):
    rdir = make_run(tmp_path, strategy=strategy, epochs=3, gradual_stages=2, gradual_stage_epochs=1)
    assert worker_main([str(rdir)]) == 0
    epochs = [e for e in events_of(rdir) if e.type == "epoch"]
    if strategy == "gradual":
        assert [e.stage for e in epochs] == [0, 1, 2]
        assert epochs[0].trainable < epochs[1].trainable < epochs[2].trainable
        assert [e.lr for e in epochs] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    else:
        lrs = list(epochs[0].lrs.values())
        assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1e-3)


def test_user_errors_fail_the_run_with_one_line(tmp_path):
    rdir = make_run(tmp_path)
    cfg = json.loads((rdir / "config.json").read_text())
    cfg["data"]["dataset"] = "transport"
    cfg["data"]["data_root"] = str(tmp_path / "nodata")
    atomic_write_json(rdir / "config.json", cfg)
    assert worker_main([str(rdir)]) == 1
    failed = [e for e in events_of(rdir) if e.type == "failed"][0]
    assert failed.kind == "user" and "\n" not in failed.error
    assert "cifar-10-batches-py" in failed.error and "transport" in failed.error
    assert load_run(rdir).summary.status == "failed"


def test_cancel_file_stops_the_run(tmp_path):
    from engine.store import RunDir

    rdir = make_run(tmp_path, epochs=3)
    RunDir(rdir).request_cancel("stop please")
    assert worker_main([str(rdir)]) == 0
    last = [e for e in events_of(rdir) if e.type != "progress"][-1]
    assert last.type == "cancelled" and last.reason == "stop please"
    assert load_run(rdir).summary.status == "cancelled"


def test_class_weighting_and_augmentation_options_run(tmp_path):
    rdir = make_run(tmp_path, epochs=1, class_weighting=True)
    cfg = json.loads((rdir / "config.json").read_text())
    cfg["data"]["augment"] = True
    atomic_write_json(rdir / "config.json", cfg)
    assert worker_main([str(rdir)]) == 0
    assert load_run(rdir).summary.status == "done"
