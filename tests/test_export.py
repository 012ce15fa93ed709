"""ONNX export: every seed backbone family, parity (and its failure), metadata, providers, grids, re-exports.

Fixture stores are written through the store's writers (tests/store_fixtures.py).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engine.checkpoint import save_checkpoint
from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.models import build_classifier, norm_config
from engine.store import BEST_RULE, GridDir, RunDir, RunStore
from engine.transforms import preprocess
from export import api, cli, metadata, ort_session, run_export
from export.benchmark import BenchConfig
from export.onnx_export import export_onnx, io_shapes, read_metadata
from export.pareto import pareto_front
from export.parity import compare_logits

from .store_fixtures import add_to_grid, emit, finished_events, new_run

CLASSES = ["sandal", "sneaker", "ankle boot"]
QUICK = BenchConfig(warmup_runs=1, min_runs=3, min_seconds=0.0, max_seconds=0.1, max_runs=3)  # plumbing, not figures


# --- fixtures: a run store with tiny checkpoints and tiny data ----------------------


def checkpoint_meta(backbone: str, size: int, model, run_id: str = "r", classes=CLASSES) -> dict:
    norm = norm_config(model.backbone)
    return {"backbone": backbone, "head": "seed", "num_classes": len(classes), "classes": list(classes),
            "image_size": size, "mean": norm["mean"], "std": norm["std"], "interpolation": "bilinear",
            "channels": "RGB", "in_chans_source": 1, "run_id": run_id, "dataset": "footwear", "epoch": 3,
            "val_loss": 0.25}


def make_run(grid_dir: Path, backbone: str = "test_efficientnet", size: int = 32, strategy: str = "frozen",
             dataset: str = "footwear", val_acc: float | list = 0.5, seed: int = 0,
             val_loss: float | list = 0.25) -> Path:
    """A finished run folder as the engine writes it: config, events (and so summary), best checkpoint.
    ``val_acc``/``val_loss``: one value, or one per epoch."""
    accs = list(val_acc) if isinstance(val_acc, (list, tuple)) else [val_acc]
    losses = list(val_loss) if isinstance(val_loss, (list, tuple)) else [val_loss]
    cfg = RunConfig(data=DataConfig(dataset=dataset, image_size=size), model=ModelConfig(backbone=backbone),
                    train=TrainConfig(strategy=strategy, epochs=len(accs)))
    gdir = add_to_grid(grid_dir.parent, grid_dir.name, [cfg])
    rd = new_run(gdir, cfg)
    emit(rd, finished_events(cfg, accs, losses))
    torch.manual_seed(seed)
    model = build_classifier(backbone, "seed", len(CLASSES))
    save_checkpoint(model, rd.best, checkpoint_meta(backbone, size, model, cfg.run_id))
    return rd.path


def tiny_data(n: int = 48, seed: int = 0, hw: int = 28) -> SimpleNamespace:
    """DatasetSplits-shaped: grey uint8 (N, 1, 28, 28) with smooth structure, labels 0..2."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, 7, 7), dtype=np.uint8)
    x = torch.nn.functional.interpolate(torch.from_numpy(base).float(), size=(hw, hw), mode="bilinear")
    x = x.round().clamp(0, 255).to(torch.uint8)
    y = torch.from_numpy(rng.integers(0, 3, n))
    split = SimpleNamespace(x=x, y=y)
    return SimpleNamespace(classes=tuple(CLASSES), test=split, train=split)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """One end-to-end export of a test_efficientnet run (int8 + fp16, quick CPU+CUDA benchmark)."""
    grid = tmp_path_factory.mktemp("store") / "g"
    run = make_run(grid)
    data = tiny_data()
    seen = []
    summary = api.export_run(run, variants=("int8", "fp16"), batches=(1, 4), bench_config=QUICK,
                             providers=["cuda", "cpu"], data=data, progress=seen.append)
    return {"run": run, "summary": summary, "data": data, "progress": seen, "detail": RunDir(run).export.detail()}


# --- every seed backbone family exports, with parity ---------------------------------

# Cheap members of the seed's families (vgg16, resnet50, mobilenetv2, efficientnetb0) at 32 px.
FAMILIES = ["vgg11", "resnet18", "mobilenetv2", "efficientnet_lite0", "test_byobnet"]


@pytest.mark.parametrize("backbone", FAMILIES)
def test_backbone_family_exports_with_parity(backbone, tmp_path):
    torch.manual_seed(0)
    model = build_classifier(backbone, "seed", 3).eval()
    meta = metadata.build(checkpoint_meta(backbone, 32, model))
    path = export_onnx(model, tmp_path / "m.onnx", meta)
    assert io_shapes(path) == {"input": ["batch", 3, 32, 32], "logits": ["batch", 3]}
    session = ort_session.open_session(path).session
    x = preprocess(tiny_data(5).test.x, 32, meta["mean"], meta["std"])
    with torch.no_grad():
        ref = model(x).numpy()
    got = session.run(["logits"], {"input": x.numpy()})[0]
    result = compare_logits(ref, got)
    assert result.passed, result.message()
    assert result.max_abs_diff < 1e-4
    assert result.top1_agreement == 1.0
    # the batch axis is dynamic: one image gives the first row
    one = session.run(["logits"], {"input": x[:1].numpy()})[0]
    np.testing.assert_allclose(one, got[:1], atol=1e-5)


# --- the end-to-end export ---------------------------------------------------------


def test_export_run_summary_contract(exported):
    s = exported["summary"]
    assert set(s) == {"status", "error", "onnx_accuracy", "onnx_f1_macro", "torch_accuracy", "torch_f1_macro",
                      "parity_max_abs_diff", "top1_agreement", "size_mb", "latency", "torch_latency", "embedded",
                      "provenance"}
    assert s["status"] == "ok", s["error"]
    assert s["parity_max_abs_diff"] < 1e-4
    assert s["top1_agreement"] == 1.0
    assert s["onnx_accuracy"] == s["torch_accuracy"]
    assert s["onnx_f1_macro"] == pytest.approx(s["torch_f1_macro"])
    out = RunDir(exported["run"]).export
    assert s["size_mb"] == pytest.approx(out.model.stat().st_size / 1e6, abs=1e-3)
    assert out.summary() == s
    assert not out.staging.path.exists() and not out.failed_attempt.path.exists()  # swapped in, nothing left over
    for lat in list(s["latency"].values()) + list(s["torch_latency"].values()):
        assert set(lat) == {"1", "4"}
        for m in lat.values():
            assert set(m) == {"p50_ms", "p90_ms", "p99_ms", "img_per_s"}
            assert 0 < m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"]
    assert "cpu" in s["torch_latency"]
    embedded = s["embedded"]  # the deployable file, uint8 images in, timed beside the plain one
    assert embedded["path"] == out.EMBEDDED and out.embedded.is_file()
    assert embedded["top1_agreement_onnx"] == 1.0 and embedded["max_prob_diff_onnx"] < 1e-4
    assert set(embedded["latency"]) == set(s["latency"])
    for lat in embedded["latency"].values():
        assert set(lat) == {"1", "4"} and all(m["p50_ms"] > 0 for m in lat.values())
    assert s["provenance"]["onnxruntime"] == ort.__version__
    assert s["provenance"]["torch"] == torch.__version__
    assert s["provenance"]["cpu"]
    stages = [p.stage for p in exported["progress"]]
    assert stages[0] == "export" and stages[-1] == "done" and "int8" in stages


def test_export_accuracy_matches_torch_on_the_given_test_set(exported):
    """The reported figures are the test set's: recompute them independently."""
    data, run = exported["data"], exported["run"]
    model, meta = __import__("engine.checkpoint", fromlist=["x"]).load_classifier(RunDir(run).best)
    with torch.no_grad():
        preds = model(preprocess(data.test.x, 32, meta["mean"], meta["std"])).argmax(1).numpy()
    acc = float(np.mean(preds == data.test.y.numpy()))
    assert exported["summary"]["torch_accuracy"] == pytest.approx(acc)
    session = ort_session.open_session(RunDir(run).export.model).session
    x = preprocess(data.test.x, 32, meta["mean"], meta["std"]).numpy()
    onnx_preds = session.run(["logits"], {"input": x})[0].argmax(1)
    assert exported["summary"]["onnx_accuracy"] == pytest.approx(float(np.mean(onnx_preds == data.test.y.numpy())))


def test_metadata_round_trip(exported):
    run = exported["run"]
    from engine.checkpoint import read_metadata as read_ckpt

    ckpt = read_ckpt(RunDir(run).best)
    model_file = RunDir(run).export.model
    via_onnx = read_metadata(model_file)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    via_ort = metadata.decode(session.get_modelmeta().custom_metadata_map)
    assert via_onnx == via_ort
    for key in metadata.FROM_CHECKPOINT:
        assert via_onnx[key] == ckpt[key], key
    assert via_onnx["classes"] == CLASSES and via_onnx["image_size"] == 32
    assert via_onnx["format"] == metadata.FORMAT
    assert via_onnx["source_run"] == str(run)
    assert via_onnx["opset"] == 17


def test_variants_sizes_and_accuracy_change(exported):
    variants = exported["detail"]["variants"]
    fp32 = exported["summary"]["size_mb"]
    out = RunDir(exported["run"]).export
    int8, fp16 = variants["int8"], variants["fp16"]
    assert int8["size_mb"] < 0.6 * fp32 and fp16["size_mb"] < 0.6 * fp32
    assert out.variant("int8").is_file() and out.variant("fp16").is_file()
    for v in (int8, fp16):
        assert v["accuracy_delta"] == pytest.approx(v["accuracy"] - exported["summary"]["onnx_accuracy"])
        assert 0.0 <= v["top1_agreement_fp32"] <= 1.0
    assert fp16["max_abs_diff_fp32"] < 1e-2  # fp16 rounding, nothing worse
    assert int8["settings"]["format"] == "QDQ" and int8["evaluated_on"] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in int8["latency"]
    # the variant carries the fp32 model's deployment metadata
    assert read_metadata(out.variant("int8"))["classes"] == CLASSES


def test_provider_fallback_is_reported_never_timed_as_cuda(exported):
    s, detail = exported["summary"], exported["detail"]
    cuda = detail["providers"]["CUDAExecutionProvider"]
    if torch.cuda.is_available() and not cuda["fallback"]:
        assert "CUDAExecutionProvider" in s["latency"]
        assert cuda["actual"][0] == "CUDAExecutionProvider"
    else:  # this machine: onnxruntime-gpu without a usable CUDA
        assert cuda["fallback"] is True and cuda["status"] == "fallback"
        assert cuda["actual"] == ["CPUExecutionProvider"]
        assert cuda["error"].startswith("CUDAExecutionProvider requested, session runs on CPUExecutionProvider")
        assert list(s["latency"]) == ["CPUExecutionProvider"]
        assert list(s["torch_latency"]) == ["cpu"]


def test_fallback_detected_from_get_providers(monkeypatch, tmp_path):
    """Whatever the machine: a session that reports CPU when CUDA was asked for is a fallback."""

    class FakeSession:
        def __init__(self, *args, **kwargs):
            self.kwargs = kwargs

        def get_providers(self):
            return ["CPUExecutionProvider"]

        def get_provider_options(self):
            return {"CPUExecutionProvider": {}}

        def disable_fallback(self):
            self.fallback_disabled = True

    monkeypatch.setattr(ort_session.ort, "InferenceSession", FakeSession)
    monkeypatch.setattr(ort_session, "provider_load_error", lambda p: "libcudart.so.13: cannot open")
    info = ort_session.open_session(tmp_path / "m.onnx", "cuda")
    assert info.requested == "CUDAExecutionProvider" and info.actual == "CPUExecutionProvider"
    assert info.fell_back and "libcudart.so.13" in info.error
    assert info.session.fallback_disabled
    assert [p[0] if isinstance(p, tuple) else p for p in info.session.kwargs["providers"]] == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert not ort_session.open_session(tmp_path / "m.onnx", "cpu").fell_back


def test_two_onnxruntime_distributions_warn_with_the_fix(monkeypatch):
    msg = ort_session.conflict_message(["onnxruntime 1.32.0", "onnxruntime-gpu 1.31.1"])
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in msg
    assert ort_session.conflict_message(["onnxruntime-gpu 1.31.1"]) == ""
    installed = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}

    def version(name):
        if name in installed:
            return installed[name]
        raise ort_session.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(ort_session.importlib.metadata, "version", version)
    ort_session.check_distributions.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="installed together"):
            assert ort_session.check_distributions()
    finally:
        ort_session.check_distributions.cache_clear()


@pytest.mark.parametrize("env, expected", [
    ({"platform_machine": "x86_64", "sys_platform": "linux"}, "onnxruntime-gpu"),
    ({"platform_machine": "aarch64", "sys_platform": "linux"}, "onnxruntime"),
    ({"platform_machine": "arm64", "sys_platform": "darwin"}, "onnxruntime"),
    ({"platform_machine": "x86_64", "sys_platform": "darwin"}, "onnxruntime"),
    ({"platform_machine": "AMD64", "sys_platform": "win32"}, "onnxruntime-gpu"),
    ({"platform_machine": "ARM64", "sys_platform": "win32"}, "onnxruntime"),
])
def test_pyproject_installs_exactly_one_onnxruntime(env, expected):
    tomllib = pytest.importorskip("tomllib")
    Requirement = pytest.importorskip("packaging.requirements").Requirement

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    deps = [Requirement(d) for d in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    ort_deps = [r for r in deps if r.name in ("onnxruntime", "onnxruntime-gpu")]
    full_env = {"platform_machine": "", "sys_platform": "", "python_version": "3.11", "platform_system": "",
                "os_name": "posix", "implementation_name": "cpython", **env}
    chosen = [r.name for r in ort_deps if r.marker is None or r.marker.evaluate(full_env)]
    assert chosen == [expected]


# --- parity failures fail loudly ------------------------------------------------------


def test_compare_logits_tolerance_and_near_ties():
    ref = np.array([[2.0, 1.0, 0.0], [1.0, 1.0 + 1e-4, 0.0]])
    assert compare_logits(ref, ref + 5e-4).passed
    # a flipped near-tie within the tolerance is excused, and counted
    flipped = ref.copy()
    flipped[1] = [1.0 + 2e-4, 1.0, 0.0]
    r = compare_logits(ref, flipped)
    assert r.passed and r.disagreements == 1 and r.top1_agreement == 0.5
    bad = compare_logits(ref, ref + np.array([0, 0, 2e-3]))
    assert not bad.passed and bad.max_abs_diff == pytest.approx(2e-3)
    assert "FAILED" in bad.message()
    assert not compare_logits(ref, np.full_like(ref, np.nan)).passed


def test_parity_failure_is_marked_and_fails_the_command(tmp_path, monkeypatch, capsys):
    grid = tmp_path / "g"
    run = make_run(grid)
    data = tiny_data(16)

    def broken_export(model, path, meta, **kw):  # an exporter that gets one weight wrong
        import copy

        bad = copy.deepcopy(model)
        with torch.no_grad():
            bad.head[-1].bias.add_(0.5)
        return export_onnx(bad, path, meta, **kw)

    monkeypatch.setattr(run_export, "export_onnx", broken_export)
    summary = api.export_run(run, benchmark=False, data=data)
    assert summary["status"] == "parity_failed"
    assert summary["parity_max_abs_diff"] == pytest.approx(0.5, abs=1e-4)
    assert "parity FAILED" in summary["error"]
    assert summary["error"].endswith("an export problem")  # float64 PyTorch agrees with fp32 PyTorch, not ONNX
    out = RunDir(run).export
    assert not out.model.exists() and out.failed_model.is_file()
    assert out.summary()["status"] == "parity_failed"

    # the command says so and exits 1
    monkeypatch.setattr(run_export, "load_data", lambda run_dir: data)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", str(run), "--no-bench", "--quiet"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "export parity_failed" in err and run.name in err


def test_failed_export_is_recorded_not_raised(tmp_path, monkeypatch):
    run = make_run(tmp_path / "g")

    def exploding(*a, **k):
        raise RuntimeError("unsupported operator aten::foo\nmore detail")

    monkeypatch.setattr(run_export, "export_onnx", exploding)
    summary = api.export_run(run, benchmark=False, data=tiny_data(8))
    assert summary["status"] == "failed"
    assert summary["error"] == "RuntimeError: unsupported operator aten::foo"  # no earlier export to keep
    assert RunDir(run).export.summary()["status"] == "failed"
    assert "unsupported operator aten::foo" in RunDir(run).export.detail()["traceback"]


# --- grids, selection, CSV, pareto ------------------------------------------------------


def test_pareto_front():
    pts = [(0.9, 10.0), (0.8, 5.0), (0.85, 12.0), (0.9, 10.0), (0.7, 5.0), None, (float("nan"), 1.0), (0.95, 30.0)]
    assert pareto_front(pts) == [True, True, False, True, False, False, False, True]
    assert pareto_front([]) == []


def test_select_runs_by_validation_accuracy(tmp_path):
    grid = tmp_path / "g"
    for backbone, strategy, acc in [("test_efficientnet", "frozen", 0.6), ("test_efficientnet", "full", 0.8),
                                    ("test_resnet", "frozen", 0.7)]:
        make_run(grid, backbone=backbone, strategy=strategy, val_acc=acc)
    records = api.grid_records(grid)
    assert len(api.select_runs(records, "all")) == 3
    assert [r.run_id for r in api.select_runs(records, "best-per-dataset")] == [
        "footwear__test_efficientnet__full"]
    assert sorted(r.run_id for r in api.select_runs(records, "best-per-dataset-backbone")) == [
        "footwear__test_efficientnet__full", "footwear__test_resnet__frozen"]
    with pytest.raises(api.ExportError, match="not known"):
        api.select_runs(records, "best")


def test_select_runs_follows_the_stores_rule(tmp_path):
    """BEST_RULE: the kept epoch is the lowest val loss, ranked by its val accuracy, ties by lower val loss."""
    grid = tmp_path / "g"
    # its highest val accuracy (0.95) is not at its kept epoch (lowest val loss, epoch 2: 0.70)
    make_run(grid, strategy="frozen", val_acc=[0.95, 0.70], val_loss=[0.6, 0.4])
    make_run(grid, strategy="partial", val_acc=0.80, val_loss=0.5)
    make_run(grid, strategy="full", val_acc=0.80, val_loss=0.3)  # same val accuracy, lower val loss: it wins
    records = api.grid_records(grid)
    assert [r.summary.best_val_acc for r in records] == [0.70, 0.80, 0.80]
    assert [r.run_id for r in api.select_runs(records, "best-per-dataset")] == ["footwear__test_efficientnet__full"]
    assert [r.run_id for r in api.select_runs(records[::-1], "best-per-dataset")] == [
        "footwear__test_efficientnet__full"]  # the order they come in plays no part


def test_cli_select_shows_the_rule(tmp_path, monkeypatch, capsys):
    grid = tmp_path / "g"
    make_run(grid, strategy="frozen", val_acc=0.6, seed=0)
    make_run(grid, strategy="full", val_acc=0.8, seed=1)
    monkeypatch.setattr(run_export, "load_data", lambda run_dir: tiny_data(8))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--help"])
    assert BEST_RULE in " ".join(capsys.readouterr().out.split())  # --select's help states the rule
    args = parser.parse_args(["export", "g", "--runs", str(tmp_path), "--select", "best-per-dataset", "--no-bench",
                              "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"best-per-dataset: footwear__test_efficientnet__full ({BEST_RULE})"
    assert RunDir(grid / "footwear__test_efficientnet__full").export.summary()["status"] == "ok"
    assert RunDir(grid / "footwear__test_efficientnet__frozen").export.summary() is None


# --- re-exports: a new export replaces the previous one only once it finished ------------------------


def _exploding_export(*a, **k):
    raise RuntimeError("unsupported operator aten::foo")


def test_failed_reexport_keeps_the_previous_good_export(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "g")
    data = tiny_data(8)
    out = RunDir(run).export
    first = api.export_run(run, benchmark=False, data=data)
    assert first["status"] == "ok"
    good_model, good_summary = out.model.read_bytes(), out.summary()

    monkeypatch.setattr(run_export, "export_onnx", _exploding_export)
    again = api.export_run(run, benchmark=False, data=data)
    assert again["status"] == "failed"
    assert out.summary() == good_summary and out.model.read_bytes() == good_model  # untouched
    assert again["error"] == (f"RuntimeError: unsupported operator aten::foo (the previous good export in "
                              f"{out.path} is kept; this attempt is in {out.failed_attempt.path})")
    assert out.failed_attempt.summary() == again and "aten::foo" in out.failed_attempt.detail()["traceback"]
    assert not out.staging.path.exists()

    # the command says so, in one line, and exits 1
    monkeypatch.setattr(run_export, "load_data", lambda run_dir: data)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", str(run), "--no-bench", "--quiet"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "export failed" in err and "previous good export" in err and "is kept" in err

    # a later export that succeeds replaces it and clears the failed attempt
    monkeypatch.undo()
    assert api.export_run(run, benchmark=False, data=data)["status"] == "ok"
    assert out.summary()["status"] == "ok" and not out.failed_attempt.path.exists()


def test_a_failed_first_export_is_published_and_replaced_by_the_next(tmp_path, monkeypatch):
    """With no good export to keep, a failed one is what readers see, until a good one replaces it."""
    run = make_run(tmp_path / "g")
    out = RunDir(run).export
    monkeypatch.setattr(run_export, "export_onnx", _exploding_export)
    assert api.export_run(run, benchmark=False, data=tiny_data(8))["status"] == "failed"
    assert out.summary()["status"] == "failed" and not out.failed_attempt.path.exists()
    monkeypatch.undo()
    assert api.export_run(run, benchmark=False, data=tiny_data(8))["status"] == "ok"
    assert out.summary()["status"] == "ok" and out.model.is_file()


def test_a_swap_cut_short_gets_the_previous_export_back(tmp_path, monkeypatch):
    """Killed between moving the old export aside and moving the new one in: the next export restores it."""
    import os

    run = make_run(tmp_path / "g")
    out = RunDir(run).export
    assert api.export_run(run, benchmark=False, data=tiny_data(8))["status"] == "ok"
    good = out.summary()
    os.rename(out.path, out.retired.path)  # the state such a kill leaves
    monkeypatch.setattr(run_export, "export_onnx", _exploding_export)
    assert api.export_run(run, benchmark=False, data=tiny_data(8))["status"] == "failed"
    assert out.summary() == good and out.model.is_file() and not out.retired.path.exists()


def test_export_grid_writes_csv_with_latency_and_pareto(tmp_path):
    import pandas as pd

    grid = tmp_path / "g"
    make_run(grid, strategy="frozen", seed=0)
    make_run(grid, strategy="full", seed=1)
    rows = api.export_grid(grid, batches=(1, 2), bench_config=QUICK, providers=["cpu"], data=tiny_data(16))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    df = pd.read_csv(GridDir(grid).exports_csv)
    assert list(df["run_id"]) == [r["run_id"] for r in rows]
    for col in ("dataset", "backbone", "strategy", "torch_accuracy", "onnx_accuracy", "torch_f1_macro",
                "onnx_f1_macro", "parity_max_abs_diff", "size_mb", "cpu_b1_p50_ms", "cpu_b2_img_s",
                "torch_cpu_b1_p50_ms", "cpu_b1_vs_torch", "pareto_cpu_b1", "cpu", "onnxruntime"):
        assert col in df.columns, col
    assert (df["onnx_accuracy"] == df["torch_accuracy"]).all()
    assert df["pareto_cpu_b1"].any()
    expected = pareto_front(list(zip(df["onnx_accuracy"], df["cpu_b1_p50_ms"])))
    assert list(df["pareto_cpu_b1"]) == expected
    ratio = df["cpu_b1_vs_torch"].iloc[0]
    assert ratio == pytest.approx(df["cpu_b1_img_s"].iloc[0] / df["torch_cpu_b1_img_s"].iloc[0], rel=0.01)
    long = api.latency_rows(grid / rows[0]["run_id"])
    assert [(r["engine"], r["batch"]) for r in long] == [("onnx cpu", 1), ("onnx cpu", 2), ("onnx+preprocess cpu", 1),
                                                         ("onnx+preprocess cpu", 2), ("torch cpu", 1), ("torch cpu", 2)]
    assert long[0]["vs_torch"] == pytest.approx(ratio, rel=0.01) and long[4]["vs_torch"] is None
    assert df["embedded_cpu_b1_p50_ms"].iloc[0] == long[2]["p50_ms"]


def test_export_run_user_errors(tmp_path):
    with pytest.raises(api.ExportError, match="no best.safetensors"):
        api.export_run(tmp_path)
    run = make_run(tmp_path / "g")
    with pytest.raises(api.ExportError, match="variant 'int4' not known"):
        api.export_run(run, variants=("int4",))
    with pytest.raises(api.ExportError, match="at least 1"):
        api.export_run(run, batches=(0,))
    with pytest.raises(api.ExportError, match="not a grid folder"):
        api.export_grid(run)


@pytest.mark.parametrize("argv, message", [
    (["export", "nope"], "neither a run nor a grid"),
    (["export", "{run}", "--batches", "1,x"], "--batches expects integers"),
    (["export", "{run}", "--threads", "0"], "--threads must be at least 1"),
    (["export", "{run}", "--variants", "int4"], "variant 'int4' not known"),
    (["export", "{grid}", "--providers", "tpu"], "execution provider 'tpu' not known"),
])
def test_cli_user_errors_are_one_line(argv, message, tmp_path, capsys):
    run = make_run(tmp_path / "g")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([a.format(run=run, grid=run.parent) for a in argv] + ["--runs", str(tmp_path)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("finetune-tui: error: ") and message in err


def test_cli_targets_are_located_by_the_store(tmp_path):
    """export's TARGET goes through RunStore.locate: grid name, GRID/RUN_ID, or a folder's path."""
    run = make_run(tmp_path / "g")
    assert RunStore(tmp_path).locate("g") == GridDir(tmp_path / "g")
    assert RunStore(tmp_path).locate(f"g/{run.name}") == RunDir(run)
    assert RunStore(Path("/nonexistent")).locate(str(run)) == RunDir(run)


def test_export_run_uses_the_runs_own_test_split(tmp_path):
    """No injected data: the footwear split is drawn from config.json as the trainer drew it."""
    run = make_run(tmp_path / "g")
    summary = api.export_run(run, benchmark=False)
    assert summary["status"] == "ok", summary["error"]
    detail = RunDir(run).export.detail()
    assert detail["parity"]["n"] == 2500  # the footwear recipe's test split
    assert detail["parity"]["passed"] and summary["onnx_accuracy"] == summary["torch_accuracy"]
