"""predict: an exported file classifies images with onnxruntime, numpy and Pillow alone."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.checkpoint import load_classifier
from engine.model_meta import ModelMeta
from engine.transforms import preprocess
from export import cli, metadata, predict
from export.onnx_export import export_onnx
from tests.test_export import CLASSES, make_run, tiny_data

REPO = Path(__file__).resolve().parents[1]
BLOCK_TORCH = (
    "import sys\n"
    "for name in ('torch', 'timm', 'torchvision', 'engine.models', 'engine.transforms', 'engine.checkpoint'):\n"
    "    sys.modules[name] = None  # any import of these now raises ImportError\n"
)


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory):
    """An exported test_efficientnet (32 px, grey data) and PNGs of its test images."""
    tmp = tmp_path_factory.mktemp("predict")
    run = make_run(tmp / "g")
    model, meta = load_classifier(run / "best.safetensors")
    path = export_onnx(model, tmp / "model.onnx", metadata.build(meta))
    data = tiny_data(12, seed=3)
    images = []
    for i, x in enumerate(data.test.x.numpy()):
        p = tmp / f"img{i}.png"
        Image.fromarray(x[0]).save(p)
        images.append(str(p))
    with torch.no_grad():
        logits = model(preprocess(data.test.x, 32, meta["mean"], meta["std"]))
    return {"path": path, "images": images, "probs": torch.softmax(logits, 1).numpy(), "meta": meta, "tmp": tmp}


def test_predict_inputs_come_from_the_file_metadata(model_and_images):
    """Deployed.spec is the checkpoint's preprocessing; the numpy twin itself: tests/test_preprocess.py."""
    m = model_and_images
    model = predict.load_model(m["path"])
    assert model.spec == ModelMeta.coerce(m["meta"]).preprocess
    assert model.spec.grey and model.spec.storage is None  # array data (grey), used as given
    x = predict.image_array(predict.load_image(m["images"][0]), model.spec)
    ref = preprocess(tiny_data(12, seed=3).test.x[:1], 32, m["meta"]["mean"], m["meta"]["std"])[0].numpy()
    assert np.abs(x - ref).max() < 1e-5


def test_predict_matches_pytorch_in_process(model_and_images):
    m = model_and_images
    model = predict.load_model(m["path"])
    assert model.classes == CLASSES and model.info.actual == "CPUExecutionProvider"
    results = predict.classify(model, m["images"], k=3)
    probs = np.array([[t["prob"] for t in sorted(r["top"], key=lambda t: t["index"])] for r in results])
    np.testing.assert_allclose(probs, m["probs"], atol=1e-5)
    assert [r["top"][0]["index"] for r in results] == list(m["probs"].argmax(1))
    assert all(r["top"][0]["prob"] >= r["top"][1]["prob"] >= r["top"][2]["prob"] for r in results)


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_predict_subprocess_never_imports_torch(model_and_images):
    """Through the sub-command parser, with torch made unimportable: would fail on any torch import."""
    m = model_and_images
    code = (
        "import argparse, sys\n"
        "from export import cli\n"
        "parser = argparse.ArgumentParser(prog='finetune-tui')\n"
        "cli.register(parser.add_subparsers(dest='command'))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "rc = args.func(args)\n"
        "assert sys.modules.get('torch') is None\n"
        "sys.exit(rc)\n"
    )
    proc = _run(code, "predict", str(m["path"]), *m["images"], "--json", "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["provider"] == "CPUExecutionProvider"
    preds = [p["top"][0]["index"] for p in out["predictions"]]
    assert preds == list(m["probs"].argmax(1))
    assert [p["image"] for p in out["predictions"]] == m["images"]
    assert all(len(p["top"]) == 2 for p in out["predictions"])
    got = [p["top"][0]["prob"] for p in out["predictions"]]
    np.testing.assert_allclose(got, m["probs"].max(1), atol=1e-5)


def test_predict_module_entry_point_without_torch(model_and_images):
    m = model_and_images
    proc = _run("import runpy, sys; sys.argv[0] = 'predict'; runpy.run_module('export.predict', run_name='__main__')",
                str(m["path"]), m["images"][0])
    assert proc.returncode == 0, proc.stderr
    name = CLASSES[int(m["probs"][0].argmax())]
    assert proc.stdout.startswith(f"{m['images'][0]}: {name} ")


def test_finetune_tui_predict_without_torch(model_and_images):
    """The real entry point (finetune_tui.cli.main), once the lead's CLI exists."""
    if not (REPO / "finetune_tui" / "cli.py").is_file():
        pytest.skip("finetune_tui/cli.py not written yet")
    m = model_and_images
    proc = _run("import sys; from finetune_tui.cli import main; sys.exit(main(sys.argv[1:]))",
                "predict", str(m["path"]), m["images"][0], "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predictions"][0]["top"][0]["index"] == int(m["probs"][0].argmax())


def _predict(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict", *argv])
    return args.func(args)


def test_predict_user_errors(model_and_images, tmp_path, capsys):
    m = model_and_images
    not_ours = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(not_ours), dynamo=False)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    cut = tmp_path / "cut.onnx"  # a copy that stopped half-way
    cut.write_bytes(m["path"].read_bytes()[: m["path"].stat().st_size // 2])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    cases = [
        ([str(tmp_path / "missing.onnx"), m["images"][0]], "model file"),
        ([str(garbage), m["images"][0]], "can't be loaded by onnxruntime"),
        ([str(cut), m["images"][0]], f"{cut} can't be loaded by onnxruntime (Protobuf parsing failed.): a cut-short "
                                     "copy or not an ONNX file? Export it again"),
        ([str(not_ours), m["images"][0]], "not a finetune-tui ONNX export"),
        ([str(m["path"]), str(tmp_path / "nope.png")], "image"),
        ([str(m["path"]), str(text)], "can't be read"),
        ([str(m["path"]), m["images"][0], "--top-k", "0"], "--top-k"),
    ]
    for argv, message in cases:
        assert _predict(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("finetune-tui: error: ") and err.count("\n") == 1 and message in err, err


def test_predict_text_output(model_and_images, capsys):
    m = model_and_images
    assert _predict([str(m["path"]), *m["images"][:2], "--top-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, probs in zip(lines, m["probs"][:2]):
        # top-k is capped at the number of classes, most likely first
        shown = line.split(": ", 1)[1].split("  ")
        assert len(shown) == 3 and shown[0].startswith(CLASSES[int(probs.argmax())])


def test_a_provider_that_falls_back_to_cpu_is_said_once(model_and_images):
    # the fallback went to logging's last-resort handler as well as predict's own warning line: said twice
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers() or _cuda_loads():
        pytest.skip("needs a CUDA provider that can't load (a CPU machine with onnxruntime-gpu)")
    m = model_and_images
    proc = subprocess.run([sys.executable, "-m", "finetune_tui.cli", "predict", str(m["path"]), m["images"][0],
                           "--provider", "cuda"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "requested, session runs on CPUExecutionProvider" in line]
    assert len(said) == 1 and said[0].startswith("finetune-tui: warning: CUDAExecutionProvider requested")


def _cuda_loads() -> bool:
    from export.ort_session import provider_load_error

    return not provider_load_error("CUDAExecutionProvider")
