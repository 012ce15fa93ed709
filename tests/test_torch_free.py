"""predict, the report's store reading and the export/report command lines work without torch.

Each check runs in a fresh interpreter, so a module imported by an earlier
test can't hide an import: it would fail on any ``import torch`` on these paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.model_meta import CHECKPOINT, ModelMeta
from engine.store import atomic_write_json

from .store_fixtures import add_to_grid, emit, finished_events, new_run

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


@pytest.mark.parametrize("module", ["export.predict", "export.cli", "export.selection", "report.loading",
                                    "report.cli", "report.api", "report.tables", "report.index", "engine.store",
                                    "sync.cli", "sync.source", "sync.tensorboard", "sync.mlflow_sync",
                                    "engine.settings"])
def test_module_imports_without_torch(module):
    proc = _fresh(f"import sys, {module}\nassert 'torch' not in sys.modules, 'torch imported'\nprint('ok')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_report_reads_a_whole_run_without_torch(tmp_path):
    """report.loading reads config, events, summary, metrics, results, probabilities, the checkpoint's
    metadata and the export summary through the store's readers, none of which needs torch."""
    from safetensors.numpy import save_file

    cfg = RunConfig(data=DataConfig(dataset="digits", image_size=48), model=ModelConfig(backbone="test_efficientnet"),
                    train=TrainConfig(strategy="frozen", epochs=2))
    gdir = add_to_grid(tmp_path, "g", [cfg])
    rd = new_run(gdir, cfg)
    emit(rd, finished_events(cfg, [0.5, 0.7], [0.9, 0.6], test={"accuracy": 0.75}))
    classes = [str(i) for i in range(10)]
    meta = ModelMeta(backbone="test_efficientnet", head="seed", classes=tuple(classes), image_size=48,
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), in_chans_source=1, run_id=rd.run_id,
                     dataset="digits", epoch=2, val_loss=0.6)
    save_file({"w": np.zeros((2, 2), np.float32)}, str(rd.best), metadata=meta.to_strings(CHECKPOINT))
    probs = np.eye(10)[[1, 2, 3, 3]] * 0.9 + 0.01
    rd.write_probs(probs, np.array([1, 2, 3, 4]), np.arange(4))
    rd.write_results({"classes": classes, "accuracy": 0.75, "f1_macro": 0.7, "best_epoch": 2, "epochs_run": 2})
    rd.write_metrics([{"epoch": 1, "val_loss": 0.9, "val_acc": 0.5}, {"epoch": 2, "val_loss": 0.6, "val_acc": 0.7}])
    atomic_write_json(rd.export.summary_file, {"status": "ok", "error": "", "onnx_accuracy": 0.75})
    code = ("import sys\n"
            "from report.loading import load_grid\n"
            "run = load_grid(sys.argv[1]).runs[0]\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "print(run.status, run.image_size, run.config.data.image_size, run.summary.best_epoch,\n"
            "      run.summary.best_val_acc, run.preds.tolist(), len(run.metrics), run.export['status'], run.problems)\n")
    proc = _fresh(code, str(gdir.path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["done", "48", "48", "2", "0.7", "[1,", "2,", "3,", "3]", "2", "ok", "[]"]


def test_checking_a_cpu_grid_before_it_starts_imports_neither_timm_nor_the_trainer(tmp_path):
    """`resume` (and the TUI's R) validate the grid in the foreground: on a cpu/auto grid that took 7 s of
    torch, timm and scikit-learn imports before the orchestrator could start."""
    code = ("import sys\n"
            "from engine.orchestrator import validate\n"
            "from engine.presets import get_preset\n"
            "validate(get_preset('demo'), sys.argv[1])\n"
            "print(sorted(m for m in ('timm', 'engine.trainer', 'sklearn') if m in sys.modules))")
    proc = _fresh(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
