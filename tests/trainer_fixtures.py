"""Run folders for trainer tests: scikit-learn's digits, a tiny timm model, one thread."""

import json

import numpy as np
import pandas as pd
import torch

from engine import events as ev
from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.store import atomic_write_json

# metrics.csv columns that depend on the clock, not on the training
TIMING = ("img_per_s", "seconds")


def make_run(tmp_path, name="r", backbone="test_efficientnet", head="linear", data=None, **train):
    cfg = RunConfig(
        data=DataConfig(**{"dataset": "digits", "image_size": 32, "batch_size": 64, **(data or {})}),
        model=ModelConfig(backbone=backbone, head=head, weights="random"),
        train=TrainConfig(**{"strategy": "frozen", "epochs": 3, "threads": 1, **train}),
    )
    rdir = tmp_path / "grid" / name
    atomic_write_json(rdir / "config.json", cfg.to_dict())
    return rdir


def set_config(rdir, section, **values):
    cfg = json.loads((rdir / "config.json").read_text())
    cfg[section].update(values)
    atomic_write_json(rdir / "config.json", cfg)


def events_of(rdir):
    return ev.read_events(rdir / "events.jsonl")[0]


def of_type(rdir, kind):
    return [e for e in events_of(rdir) if e.type == kind]


def metrics_of(rdir) -> pd.DataFrame:
    return pd.read_csv(rdir / "metrics.csv")


def resume_point(rdir) -> dict:
    return torch.load(rdir / "last_state.pt", map_location="cpu", weights_only=True)


def assert_same_training(a, b, atol=1e-6):
    """Two run folders trained the same epochs to the same numbers and the same weights."""
    ma, mb = metrics_of(a), metrics_of(b)
    assert list(ma.columns) == list(mb.columns)
    assert ma.epoch.tolist() == mb.epoch.tolist()
    for col in ma.columns:
        if col not in TIMING:
            np.testing.assert_allclose(ma[col].to_numpy(float), mb[col].to_numpy(float), atol=atol, rtol=0,
                                       err_msg=col)
    from safetensors.torch import load_file

    for weights_a, weights_b in ((load_file(a / "best.safetensors"), load_file(b / "best.safetensors")),
                                 (resume_point(a)["model"], resume_point(b)["model"])):
        assert weights_a.keys() == weights_b.keys()
        for k in weights_a:
            torch.testing.assert_close(weights_a[k], weights_b[k], atol=atol, rtol=0, msg=k)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert (ra["accuracy"], ra["best_epoch"], ra["epochs_run"]) == (rb["accuracy"], rb["best_epoch"], rb["epochs_run"])
