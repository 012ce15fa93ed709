"""The deployable ONNX file: preprocessing in the graph, checked against torch, Pillow and the trainer.

The graph (export/preprocess_graph.py) is pinned to ``engine.transforms.preprocess`` (resize and
normalisation), to Pillow (``convert`` and ``ImageOps.fit``, bit for bit) and, end to end, to the
trainer's own test predictions: onnxruntime alone, fed the test split's uint8 images or the
original image files, must pick the trainer's class on at least 99.9% of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image, ImageOps

from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.data import folder, load_dataset
from engine.preprocess import Preprocess, Storage, image_input
from engine.store import RunDir, atomic_write_json, load_run
from engine.transforms import preprocess as torch_preprocess
from engine.worker import main as worker_main
from export import api, metadata, predict
from export.preprocess_graph import pillow_order, preprocess_graph

from .test_folder_predict import CLASSES as PHOTO_CLASSES
from .test_folder_predict import write_tree

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def session(spec: Preprocess) -> ort.InferenceSession:
    model = preprocess_graph(spec, "out", ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, nhwc: np.ndarray) -> np.ndarray:
    return sess.run(None, {"image": np.ascontiguousarray(nhwc, dtype=np.uint8)})[0]


# --- the graph against torch and Pillow --------------------------------------------------


@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("size", [24, 48])
def test_resize_and_normalise_match_torch(size, grey):
    """Shrinking (antialiased), growing, mixed (one side each way) and unchanged sizes."""
    rng = np.random.default_rng(size)
    sess = session(Preprocess(size, MEAN, STD, grey=grey))
    for hw in [(28, 28), (size, size), (40, 18), (17, 60), (100, 7), (8, 8)]:
        x = rng.integers(0, 256, (2, 1 if grey else 3, *hw), dtype=np.uint8)
        expected = torch_preprocess(torch.from_numpy(x), size, MEAN, STD).numpy()
        got = run(sess, x.transpose(0, 2, 3, 1))
        assert got.shape == (2, 3, size, size)
        np.testing.assert_allclose(got, expected, atol=5e-5, err_msg=str(hw))


def test_channels_follow_pillow_conversions():
    """RGB model: grey repeated, RGBA loses alpha; grey model: RGB(A) made grey as Pillow's convert("L")."""
    rng = np.random.default_rng(1)
    rgb_spec, grey_spec = Preprocess(32, MEAN, STD), Preprocess(32, MEAN, STD, grey=True)
    rgb_model, grey_model = session(rgb_spec), session(grey_spec)
    grey = rng.integers(0, 256, (30, 21), dtype=np.uint8)
    rgba = rng.integers(0, 256, (30, 21, 4), dtype=np.uint8)
    np.testing.assert_allclose(run(rgb_model, grey[None, ..., None])[0], image_input(Image.fromarray(grey), rgb_spec),
                               atol=5e-5)
    for pixels in (rgba, rgba[..., :3]):
        np.testing.assert_allclose(run(rgb_model, pixels[None])[0],
                                   image_input(Image.fromarray(pixels).convert("RGB"), rgb_spec), atol=5e-5)
        # the twin converts the file with Pillow: the graph's integer luma must be Pillow's exactly
        np.testing.assert_allclose(run(grey_model, pixels[None])[0], image_input(Image.fromarray(pixels), grey_spec),
                                   atol=5e-5)


def stored(sess_out: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Back from the model input to 0..255 pixel values (the storage size equals image_size here)."""
    mean = np.reshape(spec.mean, (3, 1, 1))
    std = np.reshape(spec.std, (3, 1, 1))
    return (sess_out * std + mean) * 255.0


@pytest.mark.parametrize("side", [32, 96])
def test_storage_step_is_pillow_fit_bit_for_bit(side):
    """Wide and tall crops, odd margins (half-pixel boxes), shrinking and growing; with Pillow 13, both
    of its pass orders (vertical first when the height shrinks much more than the width)."""
    rng = np.random.default_rng(side)
    spec = Preprocess(side, MEAN, STD, storage=Storage(side))
    sess = session(spec)  # the installed Pillow's pass order
    shapes = [(40, 72), (72, 44), (61, 36), (300, 451), (451, 300), (1000, 130), (side, side), (side + 1, side),
              (10, 13), (17, 17), (2, 3)]
    for h, w in shapes:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(ImageOps.fit(Image.fromarray(pixels), (side, side), method=Image.Resampling.BICUBIC))
        got = stored(run(sess, pixels[None])[0], spec).transpose(1, 2, 0)
        np.testing.assert_allclose(got, want.astype(np.float64), atol=1e-3, err_msg=f"{h}x{w}")


def test_pillow_pass_orders():
    assert pillow_order("12.3.0") == pillow_order("10.0.0") == "horizontal-first"
    assert pillow_order("13.0.0") == "vertical-first-when-height-shrinks-2x"


# --- end to end: a trained run, its export, onnxruntime alone --------------------------------------


def train(tmp: Path, data: DataConfig, epochs: int = 2, lr: float = 3e-3) -> Path:
    cfg = RunConfig(data=data, model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
                    train=TrainConfig(strategy="full", epochs=epochs, lr=lr, threads=1))
    run_dir = tmp / "grid" / cfg.run_id
    atomic_write_json(run_dir / "config.json", cfg.to_dict())
    assert worker_main([str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def footwear(tmp_path_factory) -> dict:
    """The footwear subset (2,500 test images, 28x28 grey) trained at 24 px: the graph shrinks every image."""
    tmp = tmp_path_factory.mktemp("embedded_footwear")
    data = DataConfig(dataset="footwear", image_size=24, batch_size=64, train_limit=600)
    run_dir = train(tmp, data)
    summary = api.export_run(run_dir, benchmark=False)
    assert summary["status"] == "ok", summary["error"]
    splits = load_dataset(name="footwear", data_root="data", val_fraction=data.val_fraction, seed=42,
                          image_size=24, train_limit=600, download=False)
    return {"run": RunDir(run_dir), "summary": summary, "test_x": np.asarray(splits.test.x)}


def test_onnxruntime_alone_agrees_with_the_trainer_on_the_test_split(footwear):
    rd = footwear["run"]
    trainer = rd.probs()
    x = footwear["test_x"]
    assert len(x) == len(trainer.preds) == 2500
    sess = ort.InferenceSession(str(rd.export.embedded), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert sess.get_inputs()[0].type == "tensor(uint8)"
    probs, index = sess.run(["probabilities", "class_index"], {"image": x.transpose(0, 2, 3, 1)})
    agreement = float(np.mean(index == trainer.preds))
    assert agreement >= 0.999, f"{agreement:.4%} agreement with the trainer's test predictions"
    np.testing.assert_allclose(probs, trainer.probs, atol=1e-3)
    np.testing.assert_array_equal(index, probs.argmax(1))
    assert len(set(trainer.preds.tolist())) > 1  # a trained model, not a constant one
    # the export measured the same and recorded it
    assert footwear["summary"]["embedded"]["top1_agreement_trainer"] == pytest.approx(agreement)
    assert footwear["summary"]["embedded"]["top1_agreement_onnx"] >= 0.999


def test_the_embedded_file_carries_the_model_metadata(footwear):
    rd = footwear["run"]
    sess = ort.InferenceSession(str(rd.export.embedded), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    assert props["format"] == "finetune-tui-onnx/2"
    assert json.loads(props["classes"]) == ["sandal", "sneaker", "ankle boot"]
    assert props["layout"] == "NHWC" and props["dtype"] == "uint8" and props["input_name"] == "image"
    assert props["output_name"] == "probabilities" and props["index_name"] == "class_index"
    assert json.loads(props["in_chans_source"]) == 1 and json.loads(props["image_size"]) == 24
    assert "in the graph" in props["preprocess"]
    assert json.loads(props["opset"]) == 18


def test_predict_uses_the_embedded_file_for_a_run_folder(footwear, tmp_path):
    rd = footwear["run"]
    x = footwear["test_x"][:6]
    paths = []
    for i, img in enumerate(x):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img[0]).save(paths[-1])
    proc = subprocess.run([sys.executable, "-m", "finetune_tui.cli", "predict", str(rd.path), *paths, "--json",
                           "--top-k", "3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == str(rd.export.embedded) and out["preprocessing"] == "in the graph"
    preds = [p["top"][0]["index"] for p in out["predictions"]]
    assert preds == rd.probs().preds[:6].tolist()
    # the plain file through the numpy/Pillow twin gives the same answers
    plain = predict.load_model(rd.export.model)
    assert not plain.embedded
    assert [r["top"][0]["index"] for r in predict.classify(plain, paths, 1)] == preds


def test_export_table_lists_the_embedded_file(footwear):
    row = api.run_row(load_run(footwear["run"]))
    assert row["embedded_size_mb"] > 0
    assert row["embedded_top1_agreement_trainer"] >= 0.999
    assert row["embedded_accuracy"] == pytest.approx(footwear["summary"]["embedded"]["accuracy"])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict:
    """A model trained on an image folder of non-square photos, some rotated by EXIF."""
    tmp = tmp_path_factory.mktemp("embedded_photos")
    tree = tmp / "photos"
    write_tree(tree, n_train=8, n_test=4)
    data = DataConfig(dataset=f"imagefolder:{tree}", image_size=24, batch_size=16, val_fraction=0.25)
    run_dir = train(tmp, data, epochs=3, lr=1e-2)
    summary = api.export_run(run_dir, benchmark=False)
    assert summary["status"] == "ok", summary["error"]
    rd = RunDir(run_dir)
    files = folder.scan(tree, data.dataset).test.files
    return {"run": rd, "files": [files[i] for i in rd.probs().index]}


def test_the_original_files_through_onnxruntime_agree_with_training(photos):
    """The client's part is decoding and EXIF orientation; the centre crop and both resizes are in the graph."""
    rd = photos["run"]
    meta = predict.load_model(rd.export.embedded).meta
    assert metadata.is_embedded(meta) and meta.storage == Storage(24)
    assert json.loads(ort.InferenceSession(str(rd.export.embedded)).get_modelmeta()
                      .custom_metadata_map["exif_by_client"]) is True
    sess = ort.InferenceSession(str(rd.export.embedded), providers=["CPUExecutionProvider"])
    trainer = rd.probs()
    probs = []
    for path in photos["files"]:
        with Image.open(path) as im:
            pixels = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        assert pixels.shape[0] != pixels.shape[1]
        probs.append(sess.run(["probabilities"], {"image": pixels[None]})[0][0])
    probs = np.asarray(probs)
    np.testing.assert_array_equal(probs.argmax(1), trainer.preds)
    np.testing.assert_allclose(probs, trainer.probs, atol=1e-4)
    assert len(PHOTO_CLASSES) == probs.shape[1]


def test_export_json_is_one_json_object(footwear, capsys):
    from finetune_tui.cli import main

    rd = footwear["run"]
    assert main(["export", str(rd.path), "--json", "--no-bench", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"exports", "latency", "exports_csv"}
    (summary,) = out["exports"]
    assert summary["run_id"] == rd.run_id and summary["status"] == "ok"
    assert summary["embedded"]["path"] == rd.export.EMBEDDED
    assert summary["embedded"]["top1_agreement_trainer"] >= 0.999
