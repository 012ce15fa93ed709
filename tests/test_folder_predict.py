"""A model trained on a folder of non-square photos: ``predict`` on the original files agrees with training.

Training stores folder images with EXIF orientation and a bicubic centre crop
(engine.preprocess.store); the checkpoint and the ONNX file record that step,
and ``predict`` repeats it, so the trainer's test predictions and ``predict``
on the very files they came from are the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.checkpoint import read_metadata
from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.data import folder
from engine.preprocess import Storage
from engine.store import atomic_write_json
from engine.worker import main as worker_main
from export import api, predict
from export.onnx_export import read_metadata as read_onnx_metadata

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("beach", "forest", "sunset")
SIZE = 32
ORIENTATION = 0x0112


def photo(label: int, rng: np.random.Generator) -> np.ndarray:
    """A non-square photo-like RGB image: smooth colour field, a class tint and an off-centre blob."""
    h, w = rng.choice([(40, 72), (72, 44), (48, 64), (60, 36)], p=[0.25] * 4)
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    tint = np.array([(40, 80, 160), (40, 150, 50), (200, 90, 30)][label], dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.1, 0.9) * w
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.12 * min(h, w)) ** 2))[..., None]
    img = 0.5 * field + 0.5 * tint + 90 * blob * (1 if label != 1 else -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def save_photo(pixels: np.ndarray, path: Path, kind: int) -> None:
    """kind 0: PNG; 1: JPEG; 2: JPEG stored rotated with EXIF orientation 6 (as phone cameras do)."""
    image = Image.fromarray(pixels)
    if kind == 0:
        image.save(path.with_suffix(".png"))
    elif kind == 1:
        image.save(path.with_suffix(".jpg"), quality=90)
    else:
        exif = Image.Exif()
        exif[ORIENTATION] = 6  # display = stored pixels turned 90 degrees clockwise
        image.transpose(Image.Transpose.ROTATE_90).save(path.with_suffix(".jpg"), quality=90, exif=exif)


def write_tree(root: Path, n_train: int, n_test: int) -> None:
    rng = np.random.default_rng(7)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                save_photo(photo(label, rng), root / split / name / f"{split}{i:02d}", (i + label) % 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("folder_predict")
    tree = tmp / "photos"
    write_tree(tree, n_train=8, n_test=4)
    cfg = RunConfig(
        data=DataConfig(dataset=f"imagefolder:{tree}", image_size=SIZE, batch_size=16, val_fraction=0.25),
        model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
        train=TrainConfig(strategy="full", epochs=4, lr=1e-2, threads=1),
    )
    run = tmp / "grid" / cfg.run_id
    atomic_write_json(run / "config.json", cfg.to_dict())
    assert worker_main([str(run)]) == 0
    summary = api.export_run(run, benchmark=False)
    assert summary["status"] == "ok", summary["error"]
    with np.load(run / "test_probs.npz") as npz:
        probs, preds, index = npz["probs"], npz["preds"], npz["index"]
    files = folder.scan(tree, cfg.data.dataset).test.files
    return {"run": run, "onnx": run / "export" / "model.onnx", "probs": probs, "preds": preds,
            "files": [str(files[i]) for i in index]}


def test_the_storage_step_is_recorded(trained):
    stored = Storage(SIZE).to_dict()
    assert read_metadata(trained["run"] / "best.safetensors")["storage"] == stored
    onnx_meta = read_onnx_metadata(trained["onnx"])
    assert onnx_meta["storage"] == stored
    assert "centre crop" in onnx_meta["preprocess"] and "EXIF" in onnx_meta["preprocess"]


def test_the_test_files_need_the_storage_step(trained):
    """Non-square, and some rotated by EXIF: stretching the raw files would be a different input."""
    sizes, rotated = set(), 0
    for path in trained["files"]:
        with Image.open(path) as im:
            sizes.add(im.size[0] == im.size[1])
            rotated += im.getexif().get(ORIENTATION) == 6
    assert sizes == {False} and rotated >= 3
    model = predict.load_model(trained["onnx"])
    stretched = dataclasses.replace(model.spec, storage=None)
    x = np.stack([predict.image_array(predict.load_image(p), stretched) for p in trained["files"]])
    assert np.abs(predict.probabilities(model, x) - trained["probs"]).max() > 1e-3


def test_predict_on_the_original_files_agrees_with_training(trained):
    """``finetune-tui predict`` (the real command line) on every test file."""
    proc = subprocess.run(
        [sys.executable, "-m", "finetune_tui.cli", "predict", str(trained["onnx"]), *trained["files"], "--json",
         "--top-k", str(len(CLASSES))],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["predictions"]
    assert [p["image"] for p in out] == trained["files"]
    probs = np.array([[t["prob"] for t in sorted(p["top"], key=lambda t: t["index"])] for p in out])
    preds = np.array([p["top"][0]["index"] for p in out])
    np.testing.assert_array_equal(preds, trained["preds"])
    np.testing.assert_allclose(probs, trained["probs"], atol=1e-4)

