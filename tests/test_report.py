"""finetune-tui report on a fixture run store: real files in the store's formats, a real tiny model.

The fixture grid has two finished runs of ``test_efficientnet`` on the embedded
footwear data (their test probabilities come from the checkpoint itself, so
Grad-CAM and the stored results agree), one failed run, and one run the grid
lists but never started. Every file is written through the store's writers
(tests/store_fixtures.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import events as ev
from engine.config import GridConfig
from engine.store import BEST_RULE, GridDir, RunDir, RunStore, atomic_write_json

from .store_fixtures import add_to_grid, emit, new_run

DATASET = "footwear"
BACKBONE = "test_efficientnet"
IMAGE_SIZE = 32
GRID = "fx"
STRATEGIES = ("frozen", "partial", "full", "gradual")
# validation accuracy of the kept epoch, per finished run: frozen must be selected, whatever the test says
VAL_ACC = {"frozen": 0.81, "full": 0.74}
GROUPS = ["conv_stem+bn1", "blocks.0", "blocks.1", "head"]


@pytest.fixture(scope="module")
def splits():
    from engine.data import load_dataset

    return load_dataset(DATASET)


def _config(strategy: str, dataset: str = DATASET, backbone: str = BACKBONE):
    from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(data=DataConfig(dataset=dataset, image_size=IMAGE_SIZE),
                     model=ModelConfig(backbone=backbone, weights="random"),
                     train=TrainConfig(strategy=strategy, epochs=4))


def _started(run_id: str, strategy: str, dataset: str = DATASET, backbone: str = BACKBONE) -> ev.Started:
    initial = {g: 10.0 + i for i, g in enumerate(GROUPS)}
    return ev.Started(run_id=run_id, pid=1, device="cpu", device_name="test cpu", versions={"torch": "x"},
                      config=_config(strategy, dataset, backbone).to_dict(), groups=GROUPS, initial_norms=initial)


def _done_run(grid_dir: Path, strategy: str, seed: int, splits, export: bool = False, dataset: str = DATASET,
              backbone: str = BACKBONE, val_acc: float | None = None) -> Path:
    """A finished run: checkpoint of a seeded random model, its real test probabilities, results, metrics, events."""
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.metrics import test_results
    from engine.models import build_classifier, norm_config
    from engine.transforms import preprocess

    cfg = _config(strategy, dataset, backbone)
    run_id = cfg.run_id
    rd = new_run(GridDir(grid_dir), cfg)
    classes = list(splits.classes)
    torch.manual_seed(seed)
    model = build_classifier(backbone, "seed", len(classes)).eval()
    norm = norm_config(model.backbone)
    with torch.no_grad():
        probs = torch.softmax(model(preprocess(splits.test.x, IMAGE_SIZE, norm["mean"], norm["std"])), 1).numpy()
    labels = splits.test.y.numpy()
    index = splits.test.index.numpy()
    meta = {"backbone": backbone, "head": "seed", "num_classes": len(classes), "classes": classes,
            "image_size": IMAGE_SIZE, "mean": norm["mean"], "std": norm["std"],
            "interpolation": "bilinear", "channels": "RGB", "in_chans_source": 1, "run_id": run_id,
            "dataset": dataset, "epoch": 3, "val_loss": 0.5}
    save_checkpoint(model, rd.best, meta)
    rd.write_probs(probs, labels, index)
    results = test_results(probs, labels, classes, index)
    results.update(run_id=run_id, dataset=dataset, backbone=backbone, strategy=strategy, best_epoch=3, epochs_run=4,
                   early_stopped=strategy == "full", train_seconds=12.5, weights={}, device="cpu",
                   image_size=IMAGE_SIZE)
    rd.write_results(results)
    val = VAL_ACC[strategy] if val_acc is None else val_acc
    rows = []
    for epoch in range(1, 5):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5 + 0.1 * epoch,
               "val_loss": 0.9 - 0.1 * epoch + (0.2 if epoch == 4 else 0), "val_acc": val - 0.05 * (3 - epoch),
               "lr": 1e-3, "img_per_s": 100.0, "seconds": 3.0, "stage": 0, "trainable": 1000,
               "is_best": epoch <= 3}
        for i, g in enumerate(GROUPS):
            moves = g == "head" or strategy == "full"
            row[f"norm:{g}"] = (10.0 + i) * (1 + (0.01 * epoch if moves else 0.0))
        rows.append(row)
    rows[3]["val_acc"] = val - 0.01
    rd.write_metrics(rows)
    events = [_started(run_id, strategy, dataset, backbone)]
    events += [ev.Epoch(epoch=r["epoch"], epochs=4, train_loss=r["train_loss"], train_acc=r["train_acc"],
                        val_loss=r["val_loss"], val_acc=r["val_acc"], is_best=r["is_best"]) for r in rows]
    events.append(ev.Finished(best_epoch=3, epochs_run=4, train_seconds=12.5,
                              test={"accuracy": results["accuracy"], "f1_macro": results["f1_macro"]}))
    emit(rd, events)
    if export:
        atomic_write_json(rd.export.summary_file, {
            "status": "ok", "error": "", "onnx_accuracy": results["accuracy"], "onnx_f1_macro": results["f1_macro"],
            "torch_accuracy": results["accuracy"], "torch_f1_macro": results["f1_macro"],
            "parity_max_abs_diff": 1e-6, "top1_agreement": 1.0, "size_mb": 0.5,
            "latency": {"CPUExecutionProvider": {"1": {"p50_ms": 1.5, "p90_ms": 2.0, "p99_ms": 3.0,
                                                       "img_per_s": 600.0},
                                                 "32": {"p50_ms": 9.0, "p90_ms": 10.0, "p99_ms": 11.0,
                                                        "img_per_s": 3500.0}}},
            "torch_latency": {}, "provenance": {}})
    return rd.path


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory, splits) -> Path:
    root = tmp_path_factory.mktemp("runs")
    gdir = add_to_grid(root, GRID, [_config(s) for s in STRATEGIES])
    _done_run(gdir.path, "frozen", 0, splits)
    _done_run(gdir.path, "full", 1, splits, export=True)
    failed = new_run(gdir, _config("partial"))
    emit(failed, [_started(failed.run_id, "partial"),
                  ev.Failed(error="out of host memory: lower --batch-size", kind="oom")])
    # the gradual run has no folder: listed in the grid's info, never started
    return gdir.path


@pytest.fixture(scope="module")
def report(grid_dir):
    from report.api import build_report

    seen = []
    rep = build_report(grid_dir, progress=lambda done, total, msg: seen.append((done, total, msg)))
    rep.progress_seen = seen
    return rep


EXPECTED = [
    "dataset_samples.png", f"training_history_{DATASET}.png", f"weight_optimization_{DATASET}.png",
    f"confusion_matrices_{DATASET}.png", f"errors_{DATASET}_{BACKBONE}.png", f"strategy_comparison_{DATASET}.png",
    "final_comparison.png", f"benchmark_{DATASET}.csv", "final_accuracy_comparison.csv", "final_f1_comparison.csv",
    f"calibration_{DATASET}.png", f"gradcam_{DATASET}_{BACKBONE}.png", f"confused_pairs_{DATASET}.csv",
    f"latency_{DATASET}.png", "reference_comparison.csv", "runs.csv", "report.md", "report.html",
]


def test_report_writes_every_file_and_names_the_gaps(report, grid_dir):
    out = grid_dir / "report"
    assert report.out == out
    missing = [name for name in EXPECTED if not (out / name).is_file()]
    assert not missing
    assert not any("failed:" in g for g in report.gaps), report.gaps  # no figure step crashed
    gaps = "\n".join(report.gaps)
    assert f"{DATASET}__{BACKBONE}__partial: failed (out of host memory" in gaps
    assert f"{DATASET}__{BACKBONE}__gradual: missing" in gaps
    md = (out / "report.md").read_text()
    assert "out of host memory" in md and "## Gaps" in md
    assert "no seed reference" in md and "test_efficientnet" in md
    assert "**Best model: test_efficientnet / frozen**" in md
    for name in EXPECTED[:-2]:
        assert f"]({name})" in md, name  # every figure and table is linked
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == sum(n.endswith(".png") for n in EXPECTED)
    assert not re.search(r'<img src="(?!data:)', html)  # no image is left as an external file
    assert report.progress_seen[-1][0] == report.progress_seen[-1][1]


def test_report_pngs_are_real_readable_images(report):
    from matplotlib.image import imread

    for name in [n for n in EXPECTED if n.endswith(".png")]:
        img = imread(report.out / name)
        height, width = img.shape[:2]
        assert width >= 450 and height >= 300, (name, img.shape)
        assert img[..., :3].std() > 0.05, f"{name} looks blank"


def test_tables_carry_the_stored_numbers(report, grid_dir):
    from report import metrics as M

    bench = pd.read_csv(report.out / f"benchmark_{DATASET}.csv").set_index("strategy")
    assert set(bench.index) == set(STRATEGIES)
    assert bench.loc["partial", "status"] == "failed" and bench.loc["gradual", "status"] == "missing"
    for strategy in ("frozen", "full"):
        rd = RunDir(grid_dir / f"{DATASET}__{BACKBONE}__{strategy}")
        res = rd.results()
        for col in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_weighted"):
            assert bench.loc[strategy, col] == pytest.approx(res[col], abs=1e-6)
        probs = rd.probs()
        assert bench.loc[strategy, "ece"] == pytest.approx(M.expected_calibration_error(probs.probs, probs.labels),
                                                           abs=1e-6)
        assert bench.loc[strategy, "val_acc"] == pytest.approx(VAL_ACC[strategy])
    assert bench.loc["full", "onnx_p50_ms_batch1"] == pytest.approx(1.5)
    # final comparison: the run with the best validation accuracy (frozen), not the best test accuracy
    final = pd.read_csv(report.out / "final_accuracy_comparison.csv", index_col="dataset")
    assert final.loc[DATASET, BACKBONE] == pytest.approx(bench.loc["frozen", "accuracy"], abs=1e-6)
    f1 = pd.read_csv(report.out / "final_f1_comparison.csv", index_col="dataset")
    assert f1.loc[DATASET, BACKBONE] == pytest.approx(bench.loc["frozen", "f1_macro"], abs=1e-6)


def test_layer_movement_separates_frozen_from_trained_groups(report):
    from report import tables

    moves = tables.layer_movement_table([r for r in report.grid.runs if r.done]).set_index("strategy")
    # the fixture's norms: the head grows 1% per epoch in every run, the backbone only under "full"
    assert moves.loc["frozen", "groups_moved"] == 0 and moves.loc["full", "groups_moved"] == len(GROUPS) - 1
    assert moves.loc["frozen", "head_change_pct"] == pytest.approx(4.0)
    assert moves.loc["full", "most_moved_pct"] == pytest.approx(4.0)
    md = (report.out / "report.md").read_text()
    assert f"frozen: backbone groups whose norm changed {BACKBONE} 0/3" in md
    assert f"full: backbone groups whose norm changed {BACKBONE} 3/3" in md


def test_confused_pairs_sum_both_finished_models(report, grid_dir):
    pairs = pd.read_csv(report.out / f"confused_pairs_{DATASET}.csv")
    total = sum(np.array(RunDir(grid_dir / f"{DATASET}__{BACKBONE}__{s}").results()["confusion_matrix"])
                for s in ("frozen", "full"))
    assert pairs["errors"].sum() == total.sum() - np.trace(total)
    assert list(pairs["errors"]) == sorted(pairs["errors"], reverse=True)
    assert (pairs["models"] == 2).all()


def test_confusion_and_errors_agree_with_results_json(report, grid_dir):
    from report import tables

    for run in [r for r in report.grid.runs if r.done]:
        res = run.results
        cm = tables.confusion_for(run)
        np.testing.assert_allclose(cm.sum(axis=1), 1.0)
        counts = np.array(res["confusion_matrix"], dtype=float)
        np.testing.assert_allclose(cm, counts / counts.sum(1, keepdims=True))
        top = tables.errors_for(run, 20)
        assert list(top["position"]) == [e["index"] for e in res["top_errors"]]


def test_gradcam_on_a_tiny_model(grid_dir, splits):
    from engine.checkpoint import load_classifier
    from report import gradcam

    rd = RunDir(grid_dir / f"{DATASET}__{BACKBONE}__frozen")
    ckpt = rd.best
    model, _ = load_classifier(ckpt)
    name, _layer, side = gradcam.pick_target_layer(model, IMAGE_SIZE)
    assert side >= gradcam.MIN_SIDE
    # the deepest stage with a map at least MIN_SIDE wide: the next stage down is smaller
    modules = gradcam._feature_modules(model.backbone)
    assert name in modules
    x = splits.test.x[:3].numpy()
    cam = gradcam.compute(ckpt, x, splits.test.y[:3].numpy())
    assert cam.pred_maps.shape == (3, IMAGE_SIZE, IMAGE_SIZE) == cam.true_maps.shape
    assert cam.pred_maps.min() >= 0 and cam.pred_maps.max() <= 1
    np.testing.assert_allclose(cam.probs, rd.probs().probs[:3], atol=1e-4)


@pytest.mark.parametrize("backbone", ["test_resnet", "test_vit", "test_convnext"])
def test_gradcam_picks_a_spatial_layer_for_any_timm_family(backbone):
    import torch

    from engine.models import build_classifier
    from report import gradcam

    torch.manual_seed(0)
    model = build_classifier(backbone, "linear", 3).eval()
    name, _layer, side = gradcam.pick_target_layer(model, 64)
    assert name in gradcam._feature_modules(model.backbone) and side >= 2
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 40, 40), dtype=np.uint8)
    cam = gradcam.compute_for_model(model, x, np.array([0, 2]), 64, [0.5] * 3, [0.25] * 3)
    assert cam.pred_maps.shape == (2, 64, 64) and np.isfinite(cam.true_maps).all()


def test_report_on_an_empty_grid_names_what_is_missing(tmp_path):
    from report.api import build_report

    gdir = RunStore(tmp_path).grid("empty")
    gdir.path.mkdir()
    gdir.write_info(GridConfig(name="empty"), ["footwear__x__frozen"])
    # a report folder left by an earlier version: its list of files, and a figure this report won't make
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".report-files").write_text("old_figure.png\n")
    (tmp_path / "out" / "old_figure.png").write_bytes(b"png")
    rep = build_report(gdir.path, out_dir=tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "footwear__x__frozen: missing" in md
    assert not any("failed:" in g for g in rep.gaps), rep.gaps
    assert not (tmp_path / "out" / "old_figure.png").exists() and not (tmp_path / "out" / ".report-files").exists()


def test_cli_report_command(grid_dir, tmp_path, capsys):
    import argparse

    from report import cli

    parser = argparse.ArgumentParser(prog="finetune-tui")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["report", "nope", "--runs", str(grid_dir.parent)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    # the store's own message (RunStore.find_grid), naming the grids that do exist
    assert err == f"finetune-tui: error: no grid 'nope' in {grid_dir.parent}; grids there: {GRID}\n"

    # a grid given as a path, with nothing finished yet: the report still comes out (the full one is tested above)
    new = RunStore(tmp_path / "runs").grid("new")
    new.path.mkdir(parents=True)
    new.write_info(GridConfig(name="new"), ["footwear__x__frozen"])
    gdir = new.path
    args = parser.parse_args(["report", str(gdir), "--out", str(tmp_path / "r"), "-q"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "report.md")
    assert "footwear__x__frozen: missing" in (tmp_path / "r" / "report.md").read_text()


def test_cli_module_imports_no_torch_or_matplotlib():
    code = "import sys, report.cli; print(any(m in sys.modules for m in ('torch', 'matplotlib', 'pandas')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": "."})
    assert out.stdout.strip() == "False"


def test_report_shows_the_selection_rule(report):
    """One definition of best, shown where the best models are named (engine.store.BEST_RULE)."""
    md = (report.out / "report.md").read_text()
    assert f"**Selection rule**: {BEST_RULE}." in md
    assert "chosen by the selection rule: validation accuracy 0.810 at its kept epoch 3" in md
    assert BEST_RULE in (report.out / "report.html").read_text()
    # the rule is the store's: the kept epoch is the lowest validation loss, ranked by its val accuracy
    best = report.best.set_index("backbone").loc[BACKBONE]
    assert best["strategy"] == "frozen" and best["best_epoch"] == 3 and best["val_acc"] == pytest.approx(0.81)


def test_failed_step_keeps_its_previous_file_marked_stale_and_exits_1(grid_dir, tmp_path, monkeypatch, capsys):
    import argparse

    from report import cli
    from report.figures import confusion

    parser = argparse.ArgumentParser(prog="finetune-tui")
    cli.register(parser.add_subparsers())
    out = tmp_path / "rep"
    args = parser.parse_args(["report", GRID, "--runs", str(grid_dir.parent), "--out", str(out), "-q"])
    assert args.func(args) == 0
    capsys.readouterr()
    name = f"confusion_matrices_{DATASET}.png"
    good = (out / name).read_bytes()
    inlined = (out / "report.html").read_text().count('src="data:image/png;base64,')

    def broken(*a, **k):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(confusion, "draw", broken)
    for _ in range(2):  # failing twice in a row still keeps the last good file
        assert args.func(args) == 1
        captured = capsys.readouterr()
        assert captured.err == (f"finetune-tui: report step failed: {name}: RuntimeError: renderer broke; "
                                f"kept the previous {name} (marked stale)\n")
        assert captured.out.strip() == str(out / "report.md")
        assert (out / name).read_bytes() == good
        md = (out / "report.md").read_text()
        assert f"**[{name}]({name})**: **STALE** (made by the report of " in md
        assert "**1 step(s) of this report failed**" in md and f"{name} failed: RuntimeError: renderer broke" in md
        assert (out / "report.html").read_text().count('src="data:image/png;base64,') == inlined

    monkeypatch.undo()
    assert args.func(args) == 0
    assert capsys.readouterr().err == ""
    md = (out / "report.md").read_text()
    assert "STALE" not in md and f"**[{name}]({name})**: Row-normalised" in md
