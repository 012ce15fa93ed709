"""One run's export, step by step: ONNX file, parity and accuracy on the test set, variants, latency.

Writes the run's export folder (``engine.store.ExportDir``): the ONNX model (renamed to
``ExportDir.FAILED_MODEL`` when parity fails, so nothing ships it by accident), the int8 / fp16
variants when asked, the summary (docs/CONTRACTS.md) and the detail (everything measured, with
provenance). Everything is written to ``ExportDir.staging`` first and swapped in once finished;
a failed attempt never replaces a good export (it is kept in ``ExportDir.failed_attempt``).
The public entry point is ``export.api.export_run``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.checkpoint import load_classifier
from engine.config import RunConfig
from engine.model_meta import ModelMeta
from engine.store import ExportDir, RunDir, RunRecord, StoreError, atomic_write_json, load_run
from export import evaluate, metadata
from export.benchmark import bench_ort, bench_torch, busy_machine, provenance, ratios
from export.embed import embed_preprocessing
from export.onnx_export import OPSET, export_onnx
from export.ort_session import CPU, CUDA, TRT, available_providers, open_session
from export.parity import compare_logits
from export.preprocess_graph import OPSET as EMBEDDED_OPSET
from export.quantize import convert_fp16, quantize_int8

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 256
BENCH_IMAGES = 64  # distinct test images the benchmark batches are cut from
DIAGNOSIS_IMAGES = 128  # a failed parity check is re-run against float64 on the worst images


@dataclass(frozen=True)
class ExportProgress:
    """What an export is doing now: ``stage`` with ``done`` of ``total`` (0 of 0: no count)."""

    run_id: str
    stage: str  # "export", "evaluate", "int8", "fp16", "benchmark CPUExecutionProvider b8", "torch cpu b8", "done"
    done: int = 0
    total: int = 0


ProgressFn = Callable[[ExportProgress], None]


def _empty_summary() -> dict:
    """docs/CONTRACTS.md's export summary, nothing measured yet."""
    return {"status": "failed", "error": "", "onnx_accuracy": None, "onnx_f1_macro": None, "torch_accuracy": None,
            "torch_f1_macro": None, "parity_max_abs_diff": None, "top1_agreement": None, "size_mb": None,
            "latency": {}, "torch_latency": {}, "embedded": None, "provenance": {}}


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


@contextmanager
def _strict_fp32(cuda: bool):
    """No TF32 in PyTorch while checking parity on CUDA (it would cost ~1e-3 on its own)."""
    if not cuda:
        yield
        return
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


class RunExport:
    """One run's export, step by step; ``detail`` and ``summary`` become the export's two JSON files."""

    def __init__(self, run_dir: Path | RunDir, **opts):
        self.rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.run_dir = self.rd.path
        self.final: ExportDir = self.rd.export  # where readers look; swapped in at the end
        self.out: ExportDir = self.final.staging  # where this export writes
        self.opts = opts
        self.record: RunRecord = load_run(self.rd)
        self.run_id = self.rd.run_id
        self.kept_previous = False  # this attempt failed and the previous good export stays
        self.summary = _empty_summary()
        self.detail: dict[str, Any] = {
            "run_id": self.run_id, "grid": self.rd.grid_name, "dataset": self.record.summary.dataset,
            "backbone": self.record.summary.backbone, "strategy": self.record.summary.strategy,
            "run_status": self.record.summary.status, "files": {}, "variants": {}, "providers": {},
            "ratio_onnx_over_torch": {}, "seconds": {},
        }

    def _progress(self, stage: str, done: int = 0, total: int = 0) -> None:
        if self.opts["progress"]:
            self.opts["progress"](ExportProgress(self.run_id, stage, done, total))

    def run(self) -> dict:
        t0 = time.perf_counter()
        start_staging(self.final)
        if self.record.summary.status != "done":
            log.warning("%s: run status is %s; exporting its current best checkpoint", self.run_id,
                        self.record.summary.status)
        try:
            self._export_and_check()
            if self.summary["status"] != "parity_failed":
                for variant in self.opts["variants"]:
                    self._variant(variant)
                if self.opts["benchmark"]:
                    self._benchmark()
                self.summary["status"] = "ok"
        except Exception as exc:  # recorded and reported, so a grid export goes on with the next run
            self.summary["status"] = "failed"
            self.summary["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
            self.detail["traceback"] = traceback.format_exc()  # for whoever debugs it, not for the terminal
            log.error("%s: export failed: %s", self.run_id, self.summary["error"])
        except BaseException:  # interrupted: nothing finished, so nothing replaces what is there
            shutil.rmtree(self.out.path, ignore_errors=True)
            raise
        self.detail["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        self.summary["provenance"] = self.detail.get("provenance", {})
        self.kept_previous = self.summary["status"] != "ok" and previous_is_good(self.final)
        if self.kept_previous:
            self.summary["error"] += (f" (the previous good export in {self.final.path} is kept; this "
                                      f"attempt is in {self.final.failed_attempt.path})")
            self.detail["kept_previous"] = str(self.final.path)
        self.summary = self.detail["summary"] = _json_safe(self.summary)
        atomic_write_json(self.out.detail_file, _json_safe(self.detail))
        atomic_write_json(self.out.summary_file, self.summary)
        publish(self.final, keep_previous=self.kept_previous)
        self._progress("done")
        return self.summary

    # -- steps --

    def _timed(self, name: str, t0: float) -> None:
        self.detail["seconds"][name] = round(time.perf_counter() - t0, 2)

    def _export_and_check(self) -> None:
        o = self.opts
        t0 = time.perf_counter()
        self._progress("export")
        self.detail["provenance"] = provenance(o["threads"], o["bench_config"] if o["benchmark"] else None)
        ckpt = self.rd.best
        self.model, meta = load_classifier(ckpt)
        self.meta: ModelMeta = ModelMeta.coerce(meta, f"checkpoint {ckpt}")
        self.data = o["data"] if o["data"] is not None else load_data(self.rd)
        if list(self.data.classes) != list(self.meta.classes):
            raise ValueError(f"the dataset's classes {list(self.data.classes)} differ from the checkpoint's "
                             f"{list(self.meta.classes)}")
        self.detail["checkpoint"] = {"path": str(ckpt), "epoch": self.meta.epoch, "val_loss": self.meta.val_loss}
        onnx_meta = metadata.build(self.meta, grid=self.rd.grid_name, source_run=str(self.run_dir),
                                   source_checkpoint=ckpt.name, strategy=self.record.summary.strategy,
                                   exported_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   exporter=f"torch {torch.__version__} (dynamo=False)")
        self.onnx_meta = onnx_meta
        self.path = export_onnx(self.model, self.out.model, onnx_meta, opset=OPSET)
        self.detail["files"]["model"] = {"path": self.path.name, "size_mb": _size_mb(self.path), "opset": OPSET,
                                         "checker": "onnx.checker full_check passed"}
        self.summary["size_mb"] = _size_mb(self.path)
        self._timed("export", t0)

        t0 = time.perf_counter()
        device, info = self._eval_session(self.path, "fp32")
        n = len(self.data.test.y)
        self._progress("evaluate", 0, n)
        with _strict_fp32(device.startswith("cuda")):
            t_logits, o_logits = evaluate.both_logits(self.model, info.session, self.data.test.x, self.meta, device,
                                                      lambda d, t: self._progress("evaluate", d, t))
        self.labels = np.asarray(self.data.test.y)
        self.onnx_logits = o_logits
        parity = compare_logits(t_logits, o_logits, o["atol"])
        tm = evaluate.metrics(t_logits, self.labels, self.meta.num_classes)
        om = evaluate.metrics(o_logits, self.labels, self.meta.num_classes)
        self.summary.update(torch_accuracy=tm["accuracy"], torch_f1_macro=tm["f1_macro"],
                            onnx_accuracy=om["accuracy"], onnx_f1_macro=om["f1_macro"],
                            parity_max_abs_diff=parity.max_abs_diff, top1_agreement=parity.top1_agreement)
        self.detail["parity"] = {**parity.to_dict(), "device": device, "provider": info.actual,
                                 "images": "the whole test split"}
        self.detail["reported"] = _reported(self.rd, o_logits.argmax(1))
        self._timed("evaluate", t0)
        if not parity.passed:
            os.replace(self.path, self.out.failed_model)
            self.detail["files"]["model"]["path"] = self.out.FAILED_MODEL
            self.summary["status"] = "parity_failed"
            self.summary["error"] = f"{parity.message()}; {self._diagnose(t_logits, o_logits)}"
            log.error("%s: %s; the file is kept as %s for inspection", self.run_id, self.summary["error"],
                      self.out.FAILED_MODEL)
        else:
            log.info("%s: %s", self.run_id, parity.message())
            if o["embed_preprocess"]:
                self._embed()

    def _embed(self) -> None:
        """The deployable file (uint8 images in, probabilities out), checked on the whole test split
        against the plain ONNX file and against the trainer's own test predictions."""
        t0 = time.perf_counter()
        self._progress("preprocess in the graph")
        meta = metadata.build_embedded(self.onnx_meta, opset=EMBEDDED_OPSET, source_model=self.out.MODEL)
        path = embed_preprocessing(self.path, self.out.embedded, meta)
        _, info = self._eval_session(path, "embedded")
        n = len(self.data.test.y)
        self._progress("evaluate preprocess in the graph", 0, n)
        probs, index = evaluate.embedded_outputs(info.session, evaluate.nhwc_batches(self.data.test.x))
        plain = evaluate.softmax(self.onnx_logits)
        parity = compare_logits(plain, probs, self.opts["atol"])  # probabilities both ways
        m = evaluate.metrics(probs, self.labels, self.meta.num_classes)
        entry: dict[str, Any] = {
            "path": path.name, "size_mb": _size_mb(path), "opset": EMBEDDED_OPSET, "input": meta["input_name"],
            "outputs": [metadata.PROBS_NAME, metadata.INDEX_NAME], "layout": "NHWC uint8",
            "accuracy": m["accuracy"], "f1_macro": m["f1_macro"],
            "max_prob_diff_onnx": parity.max_abs_diff, "top1_agreement_onnx": parity.top1_agreement,
            "index_is_argmax": bool(np.array_equal(index, probs.argmax(1))),
            "evaluated_on": info.actual, "images": "the whole test split, uint8 NHWC as stored", "latency": {},
        }
        entry.update(_trainer_agreement(self.rd, index))
        self.detail["embedded"] = entry
        self.summary["embedded"] = {**{k: entry.get(k) for k in _EMBEDDED_KEYS}, "latency": {}}
        self._timed("embedded", t0)
        if not (parity.passed and entry["index_is_argmax"]):
            os.replace(path, self.out.failed_embedded)
            entry["path"] = self.summary["embedded"]["path"] = self.out.FAILED_EMBEDDED
            self.summary["status"] = "parity_failed"
            self.summary["error"] = (f"{self.out.EMBEDDED} (preprocessing in the graph) against {self.out.MODEL}: "
                                     f"{parity.message()}")
            log.error("%s: %s", self.run_id, self.summary["error"])

    def _diagnose(self, t_logits: np.ndarray, o_logits: np.ndarray) -> str:
        """Mis-export or ill-conditioned model? Both fp32 results against a float64 PyTorch reference
        on the images where they differ most: an export bug leaves ONNX far further from it than
        PyTorch fp32; an ill-conditioned model (e.g. BatchNorm channels with zero variance) puts
        both at the same distance."""
        worst = np.sort(np.argsort(-np.abs(t_logits - o_logits).max(1), kind="stable")[:DIAGNOSIS_IMAGES])
        x = torch.as_tensor(self.data.test.x)[torch.from_numpy(worst)]
        ref = evaluate.torch_logits_fp64(self.model, evaluate.input_batches(x, self.meta, batch=64))
        torch_err = float(np.abs(t_logits[worst] - ref).max())
        onnx_err = float(np.abs(o_logits[worst] - ref).max())
        dead = sum(int((m.running_var == 0).sum()) for m in self.model.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_var is not None)
        suggest = float(f"{2 * float(np.abs(t_logits - o_logits).max()):.0e}")
        same_order = onnx_err <= 4 * max(torch_err, self.opts["atol"] / 10)
        self.detail["parity"]["fp64_reference"] = {
            "images": int(len(worst)), "torch_fp32_vs_fp64": torch_err, "onnx_vs_fp64": onnx_err,
            "batchnorm_zero_var_channels": dead, "same_order": same_order}
        found = (f"against a float64 PyTorch reference on the {len(worst)} most different images, PyTorch fp32 is "
                 f"off by {torch_err:.2g} and ONNX by {onnx_err:.2g}")
        if dead:
            found += f"; {dead} BatchNorm channel(s) have running_var 0"
        if same_order:
            return (f"{found}: the model is ill-conditioned in fp32, not mis-exported; "
                    f"accept it with --atol {suggest:g}")
        return f"{found}: ONNX is much further off than PyTorch's own rounding, an export problem"

    def _eval_session(self, path: Path, what: str, prefer_gpu: bool | None = None):
        """(torch device, SessionInfo) for evaluating ``path``: CUDA when torch and onnxruntime both can."""
        want = self.opts["device"]
        gpu = (torch.cuda.is_available() and want in ("auto", "cuda")) if prefer_gpu is None else prefer_gpu
        if gpu and CUDA in available_providers():
            info = open_session(path, CUDA, provider_options={"use_tf32": 0})
            if not info.fell_back:
                return "cuda", info
            self.detail.setdefault("notes", []).append(f"{what} evaluated on CPU: {info.error}")
        return "cpu", open_session(path, CPU, threads=self.opts["threads"])

    def _variant(self, variant: str) -> None:
        t0 = time.perf_counter()
        self._progress(variant)
        dst = self.out.variant(variant)
        if variant == "int8":
            calib = self._calibration_batches()
            settings = quantize_int8(self.path, dst, calib, sum(len(b) for b in calib))
            info = open_session(dst, CPU, threads=self.opts["threads"])
        else:
            settings = convert_fp16(self.path, dst)
            _, info = self._eval_session(dst, "fp16", prefer_gpu=torch.cuda.is_available())
        logits = evaluate.ort_logits(info.session, evaluate.input_batches(self.data.test.x, self.meta))
        m = evaluate.metrics(logits, self.labels, self.meta.num_classes)
        agree = float(np.mean(logits.argmax(1) == self.onnx_logits.argmax(1)))
        entry = {
            "path": dst.name, "size_mb": _size_mb(dst), "size_ratio": round(_size_mb(dst) / self.summary["size_mb"], 3),
            "accuracy": m["accuracy"], "f1_macro": m["f1_macro"],
            "accuracy_delta": m["accuracy"] - self.summary["onnx_accuracy"],
            "f1_delta": m["f1_macro"] - self.summary["onnx_f1_macro"],
            "top1_agreement_fp32": agree,
            "max_abs_diff_fp32": float(np.abs(logits - self.onnx_logits).max()),
            "evaluated_on": info.actual, "settings": settings, "latency": {},
        }
        if variant == "fp16" and info.actual == CPU:
            entry["note"] = "fp16 is for GPUs: accuracy measured on the CPU provider; no latency without CUDA"
        self.detail["variants"][variant] = entry
        self._timed(variant, t0)

    def _calibration_batches(self) -> list[np.ndarray]:
        split = getattr(self.data, "train", None)
        source = "train"
        if split is None or len(split.y) == 0:
            split, source = self.data.test, "test (no train split given)"
        n = min(CALIBRATION_IMAGES, len(split.y))
        pick = np.sort(np.random.default_rng(0).choice(len(split.y), size=n, replace=False))
        x = torch.as_tensor(split.x)[torch.from_numpy(pick)]
        self.detail["calibration"] = {"split": source, "images": n, "seed": 0}
        return list(evaluate.input_batches(x, self.meta, batch=32))

    def _bench_images(self) -> np.ndarray:
        x = torch.as_tensor(self.data.test.x)[:BENCH_IMAGES]
        return next(evaluate.input_batches(x, self.meta, batch=BENCH_IMAGES))

    def _provider_options(self, provider: str, embedded: bool = False) -> dict:
        if provider == TRT and embedded:  # any image size comes in: no fixed profile
            return {"device_id": 0, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(self.out.trt_cache)}
        if provider == TRT:
            s, b = self.meta.image_size, max(self.opts["batches"])
            return {"device_id": 0, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(self.out.trt_cache),
                    "trt_profile_min_shapes": f"input:1x3x{s}x{s}",
                    "trt_profile_opt_shapes": f"input:{b}x3x{s}x{s}",
                    "trt_profile_max_shapes": f"input:{b}x3x{s}x{s}"}
        if provider == CUDA:
            return {"device_id": 0}
        return {}

    def _benchmark(self) -> None:
        o = self.opts
        t0 = time.perf_counter()
        busy = busy_machine()
        if busy:
            self.detail.setdefault("notes", []).append(busy)
            log.warning("%s: %s", self.run_id, busy)
        images = self._bench_images()
        cfg, batches = o["bench_config"], o["batches"]
        wanted = o["providers"] if o["providers"] is not None else available_providers()
        torch_devices: dict[str, str] = {}
        for provider in wanted:
            info = open_session(self.path, provider, threads=o["threads"],
                                provider_options=self._provider_options(provider))
            self.detail["providers"][provider] = info.describe()
            if info.fell_back:  # reported as such, never timed under the requested provider's name
                self.detail["providers"][provider]["status"] = "fallback"
                continue
            self._progress(f"benchmark {info.actual}", 0, len(batches))
            lat = bench_ort(info, images, batches, cfg)
            self.detail.setdefault("latency", {})[info.actual] = lat
            self.summary["latency"][info.actual] = _contract_latency(lat)
            self.detail["providers"][provider]["status"] = "measured"
            torch_devices[info.actual] = "cpu" if info.actual == CPU else f"cuda:{info.options.get('device_id', 0)}"
        embedded = self.detail.get("embedded")
        if embedded and embedded["path"] == self.out.EMBEDDED:
            raw = np.ascontiguousarray(np.asarray(self.data.test.x[:BENCH_IMAGES]).transpose(0, 2, 3, 1))
            for provider in torch_devices:
                try:
                    info = open_session(self.out.path / embedded["path"], provider, threads=o["threads"],
                                        provider_options=self._provider_options(provider, embedded=True))
                except Exception as exc:  # e.g. TensorRT refusing the preprocessing graph: the rest goes on
                    self.detail.setdefault("notes", []).append(
                        f"{self.out.EMBEDDED} not timed on {provider}: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                if info.fell_back:
                    continue
                self._progress(f"benchmark preprocess in the graph {info.actual}", 0, len(batches))
                embedded["latency"][info.actual] = bench_ort(info, raw, batches, cfg)
                self.summary["embedded"]["latency"][info.actual] = _contract_latency(embedded["latency"][info.actual])
        for variant, entry in self.detail["variants"].items():
            provider = CPU if variant == "int8" else CUDA
            if provider not in self.summary["latency"]:
                continue
            info = open_session(self.out.path / entry["path"], provider, threads=o["threads"],
                                provider_options=self._provider_options(provider))
            if not info.fell_back:
                self._progress(f"benchmark {variant} {provider}", 0, len(batches))
                entry["latency"][provider] = bench_ort(info, images, batches, cfg)
        for device in sorted(set(torch_devices.values())):
            self._progress(f"torch {device}", 0, len(batches))
            lat = bench_torch(self.model, images, batches, device, cfg, threads=o["threads"])
            self.detail.setdefault("torch_latency", {})[device] = lat
            self.summary["torch_latency"][device] = _contract_latency(lat)
        for provider, device in torch_devices.items():
            self.detail["ratio_onnx_over_torch"][provider] = {
                "torch_device": device, **ratios(self.summary["latency"][provider],
                                                 self.summary["torch_latency"][device])}
        self.model.to("cpu")
        self._timed("benchmark", t0)


# the embedded-preprocessing file's entry in the summary (the detail has the rest)
_EMBEDDED_KEYS = ("path", "size_mb", "accuracy", "f1_macro", "top1_agreement_trainer", "top1_agreement_onnx",
                  "max_prob_diff_onnx", "latency")
_CONTRACT_KEYS = ("p50_ms", "p90_ms", "p99_ms", "img_per_s")  # the summary's; the detail also has runs, mean


def _json_safe(obj: Any) -> Any:
    """NaN/inf (a model that outputs NaN) become None: the store's JSON is strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _contract_latency(lat: dict[str, dict]) -> dict[str, dict]:
    return {b: {k: v[k] for k in _CONTRACT_KEYS} for b, v in lat.items()}


def data_args(config: RunConfig) -> dict[str, Any]:
    """``engine.data.load_dataset``'s arguments for a run, from its config, as its trainer passes them."""
    d = config.data
    return {"name": d.dataset, "data_root": d.data_root, "val_fraction": d.val_fraction, "seed": config.train.seed,
            "image_size": d.image_size, "train_limit": d.train_limit}


def data_key(run_dir: str | Path | RunDir) -> tuple | None:
    """What decides a run's splits (``data_args`` of its config); None if its config can't be read."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    try:
        return tuple(sorted(data_args(rd.config()).items()))
    except StoreError:
        return None


def load_data(run_dir: str | Path | RunDir):
    """The run's dataset, drawn exactly as its trainer drew it (its config's data section and seed)."""
    from engine.data import load_dataset

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    return load_dataset(**data_args(rd.config()), download=False)


def _reported(rd: RunDir, onnx_preds: np.ndarray) -> dict:
    """What training reported (test results and probabilities) next to the ONNX predictions."""
    out: dict[str, Any] = {}
    try:
        results = rd.results() or {}
        out.update({k: results[k] for k in ("accuracy", "f1_macro", "device") if k in results})
    except StoreError:
        pass
    try:
        probs = rd.probs()
    except StoreError:
        probs = None
    if probs is not None and len(probs.preds) == len(onnx_preds):
        out["onnx_pred_agreement"] = float(np.mean(probs.preds == onnx_preds))
        out["onnx_pred_disagreements"] = int(np.sum(probs.preds != onnx_preds))
    return out


def _trainer_agreement(rd: RunDir, index: np.ndarray) -> dict:
    """How often the deployable file picks the class the trainer picked on the same test image."""
    try:
        probs = rd.probs()
    except StoreError:
        probs = None
    if probs is None or len(probs.preds) != len(index):
        return {"top1_agreement_trainer": None, "trainer_disagreements": None}
    return {"top1_agreement_trainer": float(np.mean(probs.preds == index)),
            "trainer_disagreements": int(np.sum(probs.preds != index))}


def load_export(run_dir: str | Path | RunDir) -> dict | None:
    """A run's export summary, or None if it was never exported (or can't be read)."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    try:
        return rd.export.summary()
    except StoreError:
        return None


# --- staging: a new export replaces the previous one only once it finished ------------------------


def start_staging(final: ExportDir) -> None:
    """Recover from a swap cut short, then give this export an empty staging folder."""
    retired = final.retired.path
    if retired.is_dir():
        if final.path.exists():
            shutil.rmtree(retired)  # the swap finished; only the clean-up was missed
        else:
            os.rename(retired, final.path)  # killed between the two renames: the previous export comes back
    shutil.rmtree(final.staging.path, ignore_errors=True)
    final.staging.path.mkdir(parents=True)


def previous_is_good(final: ExportDir) -> bool:
    """The export now in place finished with status ok."""
    try:
        summary = final.summary()
    except StoreError:
        return False
    return summary is not None and summary.get("status") == "ok"


def publish(final: ExportDir, keep_previous: bool) -> None:
    """Swap the finished staging folder in (the previous export is retired, then removed); with
    ``keep_previous`` the staging folder becomes the failed attempt next to the good export instead."""
    staging, failed = final.staging.path, final.failed_attempt.path
    shutil.rmtree(failed, ignore_errors=True)
    if keep_previous:
        os.rename(staging, failed)
        return
    retired = final.retired.path
    shutil.rmtree(retired, ignore_errors=True)
    if final.path.exists():
        os.rename(final.path, retired)
    os.rename(staging, final.path)
    shutil.rmtree(retired, ignore_errors=True)
