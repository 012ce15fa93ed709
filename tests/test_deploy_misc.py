"""Hub weights from the Hugging Face cache offline; `runs` at 80 columns; backbone suggestions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from engine.backbones import UnknownBackbone, resolve_backbone
from engine.console import runs_table
from engine.store import RunRecord, RunSummary

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"

LOAD = """
import json, sys, torch
from safetensors.torch import load_file
from engine.models import create_backbone
from engine.weights import load_backbone_weights
backbone = create_backbone("test_efficientnet")
info = load_backbone_weights(backbone, "test_efficientnet", "pretrained", "fail")
saved = load_file(sys.argv[1])
same = all(torch.equal(v, saved[k]) for k, v in backbone.state_dict().items())
print(json.dumps({"info": info, "same": same, "n": len(backbone.state_dict())}))
"""


def fake_hub_cache(hf_home: Path) -> Path:
    """timm's test_efficientnet weights as the hub would have put them in HF_HOME (a real checkpoint layout:
    refs/main names a snapshot holding model.safetensors, classifier included)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(3)
    model = timm.create_model("test_efficientnet", pretrained=False)  # with its 1000-class classifier
    repo = hf_home / "hub" / "models--timm--test_efficientnet.r160_in1k"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    path = snapshot / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def load_in(env: dict, weights: Path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-c", LOAD, str(weights)], capture_output=True, text=True, timeout=180,
                          env=full, cwd=REPO)


def test_cached_hub_weights_load_offline(tmp_path):
    path = fake_hub_cache(tmp_path / "hf")
    proc = load_in({"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["same"] and out["n"] > 10
    assert out["info"]["source"] == "hub-cache" and out["info"]["hub_id"] == "timm/test_efficientnet.r160_in1k"
    assert out["info"]["file"] == str(path)


def test_an_empty_cache_offline_says_so(tmp_path):
    proc = load_in({"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}, tmp_path / "x")
    assert proc.returncode == 1
    assert ("HF_HUB_OFFLINE is set and timm/test_efficientnet.r160_in1k is not in the Hugging Face cache"
            in proc.stderr)


def test_hf_endpoint_is_the_host_probed(tmp_path):
    """A mirror that doesn't answer: the message names it (nothing listens on port 9 here)."""
    proc = load_in({"HF_HOME": str(tmp_path / "empty"), "HF_ENDPOINT": "http://127.0.0.1:9"}, tmp_path / "x")
    assert proc.returncode == 1
    assert "the model hub (http://127.0.0.1:9) is unreachable" in proc.stderr


def test_backbone_suggestions_have_no_duplicates():
    for typo in ("resnet5", "vgg1", "resnet50x", "efficientnet_lite"):
        with pytest.raises(UnknownBackbone) as err:
            resolve_backbone(typo)
        names = str(err.value).split("did you mean ")[1].rstrip("?").split(", ")
        assert len(names) == len(set(names)) >= 2, str(err.value)
    with pytest.raises(UnknownBackbone, match=r"did you mean efficientnet_lite0, "):
        resolve_backbone("efficientnet_lite")  # the registered (offline) one first


def test_runs_table_fits_80_columns_without_breaking_names():
    records = [RunRecord(Path(f"/s/seed/{d}__{b}__{s}"),
                         RunSummary(run_id=f"{d}__{b}__{s}", grid=g, dataset=d, backbone=b, strategy=s,
                                    status="cancelled", epoch=20, epochs=20, best_val_acc=0.9123,
                                    test_accuracy=0.9, test_f1_macro=0.8))
               for g in ("seed", "other") for d in ("transport", "footwear")
               for b in ("efficientnet_lite0", "mobilenetv2_100") for s in ("discriminative", "frozen")]
    console = Console(width=80, record=True, color_system=None)
    console.print(runs_table(records, title="runs in /home/me/experiments/runs"))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if "efficientnet_lite0" in line]
    assert len(rows) == 8  # every row names it whole, on one line
    assert all("discriminative" in line or "frozen" in line for line in rows)
    assert "grid seed" in text and "grid other" in text and "…" not in text


def test_runs_table_shows_run_time_where_it_fits_and_drops_it_before_names():
    def rec(status, seconds):
        return RunRecord(Path(f"/s/seed/footwear__efficientnet_lite0__discriminative_{status}"),
                         RunSummary(run_id=f"footwear__efficientnet_lite0__discriminative_{status}", grid="seed",
                                    dataset="footwear", backbone="efficientnet_lite0", strategy="discriminative",
                                    status=status, epoch=20, epochs=20, best_val_acc=0.9123, test_accuracy=0.9,
                                    test_f1_macro=0.8, total_seconds=seconds))

    records = [rec("done", 65.0), rec("cancelled", None)]
    wide, narrow = (Console(width=w, record=True, color_system=None) for w in (100, 80))
    wide.print(runs_table(records))
    narrow.print(runs_table(records))
    wide_text, narrow_text = wide.export_text(), narrow.export_text()
    assert " time" in wide_text and "1m05s" in wide_text
    assert " time" not in narrow_text and "1m05s" not in narrow_text
    assert max(len(line) for line in narrow_text.splitlines()) <= 80 and "…" not in narrow_text
