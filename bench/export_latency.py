"""ONNX Runtime vs eager PyTorch latency for the project's classifiers, measured in one process.

Each model is built as the engine builds it (timm features + our pooling + seed head; random
weights: they don't change the time), exported as ``finetune-tui export`` exports it, and
timed with export.benchmark on the same preprocessed batch: onnxruntime per available
provider (a provider that falls back to CPU is reported, not timed), PyTorch eager on the
matching device, same thread count. Prints a markdown table and its provenance.

``--embedded HxWxC,...`` also times the deployable file (``model.preprocess.onnx``: resize,
normalisation and softmax in the graph, built by export.embed as ``finetune-tui export`` builds
it) on random uint8 images of each source shape, next to the plain file on CPU: what a client
pays for the preprocessing it no longer writes.

    .venv/bin/python bench/export_latency.py --backbones efficientnet_lite0,mobilenetv2 --image-size 64
    .venv/bin/python bench/export_latency.py --run runs/demo/footwear__efficientnet_lite0__full
    .venv/bin/python bench/export_latency.py --providers cpu --embedded 28x28x1,480x640x3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.checkpoint import load_classifier  # noqa: E402
from engine.model_meta import ModelMeta  # noqa: E402
from engine.models import build_classifier, norm_config  # noqa: E402
from engine.store import RunDir  # noqa: E402
from export import metadata  # noqa: E402
from export.benchmark import BenchConfig, bench_ort, bench_torch, provenance, ratios  # noqa: E402
from export.embed import embed_preprocessing  # noqa: E402
from export.onnx_export import export_onnx  # noqa: E402
from export.ort_session import (  # noqa: E402
    CPU,
    available_providers,
    default_threads,
    open_session,
    resolve_provider,
    short_name,
)
from export.preprocess_graph import OPSET as EMBEDDED_OPSET  # noqa: E402
from export.quantize import quantize_int8  # noqa: E402


def models(args) -> list[tuple[str, torch.nn.Module, ModelMeta]]:
    if args.run:
        run = RunDir(args.run)
        model, meta = load_classifier(run.best)
        return [(run.run_id, model, ModelMeta.coerce(meta, f"checkpoint {run.best}"))]
    out = []
    for name in args.backbones.split(","):
        model = build_classifier(name, "seed", 3).eval()
        norm = norm_config(model.backbone)
        meta = ModelMeta(backbone=name, head="seed", classes=("a", "b", "c"), image_size=args.image_size,
                         mean=norm["mean"], std=norm["std"], run_id=f"bench-{name}", dataset="random", val_loss=0.0)
        out.append((f"{name} @ {args.image_size}", model, meta))
    return out


def time_embedded(label: str, plain: Path, meta: ModelMeta, shapes: list[tuple[int, ...]], batches: list[int],
                  threads: int, cfg: BenchConfig, tmp: Path, plain_rows: dict[int, dict]) -> list[dict]:
    """The deployable file on CPU, fed uint8 NHWC images of each source shape, beside the plain file's p50."""
    dst = embed_preprocessing(plain, tmp / "m.preprocess.onnx",
                              metadata.build_embedded(metadata.build(meta), opset=EMBEDDED_OPSET))
    info = open_session(dst, CPU, threads=threads)
    out = []
    for h, w, c in shapes:
        raw = np.random.default_rng(1).integers(0, 256, (64, h, w, c), dtype=np.uint8)
        lat = bench_ort(info, raw, batches, cfg)
        for b in batches:
            plain_p50 = plain_rows[b]["ort_p50_ms"] if b in plain_rows else float("nan")
            out.append({"model": label, "source": f"{h}x{w}x{c} uint8", "batch": b, "plain_p50_ms": plain_p50,
                        **lat[str(b)], "added_ms_per_image": (lat[str(b)]["p50_ms"] - plain_p50) / b})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a run folder: time its best checkpoint")
    p.add_argument("--backbones", default="efficientnet_lite0,mobilenetv2,test_efficientnet")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--providers", default="", help="cpu,cuda,trt (default: all offered)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--int8", action="store_true", help="also time the static int8 model on CPU")
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--embedded", default="", metavar="HxWxC,...",
                   help="also time model.preprocess.onnx on uint8 images of these source shapes (CPU)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.embedded.split(",") if s]

    batches = [int(b) for b in args.batches.split(",")]
    threads = args.threads or default_threads()
    cfg = BenchConfig(warmup_runs=10, min_runs=50, min_seconds=args.min_seconds, max_seconds=30.0)
    providers = [resolve_provider(x) for x in args.providers.split(",") if x] or available_providers()
    prov = provenance(threads, cfg)
    rows, fallbacks, embedded_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, meta in models(args):
            path = export_onnx(model, Path(tmp) / "m.onnx", metadata.build(meta))
            size = meta.image_size
            images = np.random.default_rng(0).standard_normal((64, 3, size, size)).astype(np.float32)
            variants = [("fp32", path)]
            if args.int8:
                calib = [images[i:i + 16] for i in range(0, 64, 16)]
                quantize_int8(path, Path(tmp) / "m.int8.onnx", calib, 64)
                variants.append(("int8", Path(tmp) / "m.int8.onnx"))
            torch_lat: dict[str, dict] = {}
            for provider in providers:
                for variant, vpath in variants:
                    if variant == "int8" and provider != CPU:
                        continue
                    info = open_session(vpath, provider, threads=threads)
                    if info.fell_back:
                        fallbacks.append(f"{label}: {info.error}")
                        break
                    lat = bench_ort(info, images, batches, cfg)
                    device = "cpu" if info.actual == CPU else "cuda:0"
                    if device not in torch_lat:
                        torch_lat[device] = bench_torch(model, images, batches, device, cfg, threads=threads)
                    ratio = ratios(lat, torch_lat[device])
                    for b in map(str, batches):
                        rows.append({"model": label, "variant": variant, "provider": short_name(info.actual),
                                     "batch": int(b), **{f"ort_{k}": v for k, v in lat[b].items()},
                                     "torch_p50_ms": torch_lat[device][b]["p50_ms"],
                                     "torch_img_per_s": torch_lat[device][b]["img_per_s"],
                                     "onnx_over_torch": ratio[b], "torch_device": device})
            model.to("cpu")
            if shapes:
                embedded_rows += time_embedded(label, path, meta, shapes, batches, threads, cfg, Path(tmp),
                                               {r["batch"]: r for r in rows
                                                if r["model"] == label and r["variant"] == "fp32"
                                                and r["provider"] == short_name(CPU)})
    print(f"CPU: {prov['cpu']} ({prov['cpu_count']} CPUs, {threads} threads) | GPU: {prov['gpu'] or 'none'} | "
          f"onnxruntime {prov['onnxruntime']} ({', '.join(prov['onnxruntime_distributions'])}) | "
          f"torch {prov['torch']} | load avg {prov['load_avg_1m']} | warm-up {cfg.warmup_runs}, "
          f">= {cfg.min_runs} runs and >= {cfg.min_seconds} s per figure")
    print()
    print("| model | variant | provider | batch | ORT p50 ms | ORT p90 ms | ORT p99 ms | ORT img/s "
          "| PyTorch p50 ms | PyTorch img/s | ONNX/PyTorch |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['provider']} | {r['batch']} | {r['ort_p50_ms']:.2f} | "
              f"{r['ort_p90_ms']:.2f} | {r['ort_p99_ms']:.2f} | {r['ort_img_per_s']:.0f} | {r['torch_p50_ms']:.2f} | "
              f"{r['torch_img_per_s']:.0f} | {r['onnx_over_torch']:.2f} |")
    if embedded_rows:
        print()
        print("| model | source images | batch | plain p50 ms | preprocess-in-graph p50 ms | p90 ms | img/s "
              "| added ms per image |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in embedded_rows:
            print(f"| {r['model']} | {r['source']} | {r['batch']} | {r['plain_p50_ms']:.2f} | {r['p50_ms']:.2f} | "
                  f"{r['p90_ms']:.2f} | {r['img_per_s']:.0f} | {r['added_ms_per_image']:.3f} |")
    for f in dict.fromkeys(fallbacks):
        print(f"\nfallback (not timed): {f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"provenance": prov, "rows": rows, "fallbacks": fallbacks,
                                               "embedded": embedded_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
