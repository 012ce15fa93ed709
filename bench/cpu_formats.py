"""The measurements behind engine/speed.py: memory format, inference batch size, allocator, on this CPU.

Same process, same model, same inputs, each figure next to the one it is
compared with:

- inference (``forward_features``, what the feature cache, validation and test
  run): NCHW vs channels_last at batch 32, 64, 128, 256;
- a training step (forward, backward, Adam): NCHW vs channels_last, then bf16
  autocast vs fp32 and (``--compile``) ``torch.compile`` vs eager, each pair in
  alternating rounds (medians);
- page faults per training step with glibc's default allocator settings vs
  ``engine.speed.keep_freed_memory`` (each in a fresh subprocess: the setting
  must come before torch allocates).

    python bench/cpu_formats.py [--model efficientnet_lite0] [--size 64] [--threads 2] [--seconds 4] [--compile] [--bn-frozen]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_FAULTS = """
import resource, sys, time
if sys.argv[1] == "keep":
    from engine.speed import keep_freed_memory
    assert keep_freed_memory()
import torch, timm
torch.set_num_threads(int(sys.argv[4]))
m = timm.create_model(sys.argv[2], num_classes=3).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(m.parameters())
x = torch.randn(64, 3, int(sys.argv[3]), int(sys.argv[3])).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 3, (64,))
def step():
    loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3): step()
r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter(); n = 10
for _ in range(n): step()
r1 = resource.getrusage(resource.RUSAGE_SELF)
print((r1.ru_minflt - r0.ru_minflt) / n, r1.ru_stime - r0.ru_stime, r1.ru_utime - r0.ru_utime,
      n * 64 / (time.perf_counter() - t0))
"""


def _cpu_flag(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def rate(fn, batch: int, seconds: float) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0, help="per figure")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd step (compiling takes minutes)")
    p.add_argument("--bn-frozen", action="store_true", help="training steps with BatchNorm in eval mode (train.bn)")
    p.add_argument("--json")
    args = p.parse_args()
    from engine.speed import keep_freed_memory

    keep_freed_memory()  # what every worker does first; the page-fault figures below compare it in subprocesses
    import timm
    import torch

    torch.set_num_threads(args.threads)
    prov = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "timm": timm.__version__, "model": args.model, "size": args.size, "threads": args.threads, "bn_frozen": args.bn_frozen,
            "load_start": [round(x, 2) for x in os.getloadavg()], "amx_bf16": _cpu_flag("amx_bf16")}
    print("provenance:", json.dumps(prov), flush=True)
    out: dict = {"provenance": prov, "inference": [], "train": {}, "faults": {}}
    model = timm.create_model(args.model, num_classes=3).eval()
    for bs in (32, 64, 128, 256):
        row = {"batch": bs}
        for fmt in ("nchw", "channels_last"):
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            m = model.to(memory_format=mf)
            x = torch.randn(bs, 3, args.size, args.size).contiguous(memory_format=mf)
            with torch.inference_mode():
                row[fmt] = rate(lambda: m.forward_features(x), bs, args.seconds)
        out["inference"].append(row)
        print(f"inference batch {bs:3d}: NCHW {row['nchw']:6.0f} img/s, channels_last {row['channels_last']:6.0f} "
              f"img/s ({row['channels_last'] / row['nchw']:.2f}x)", flush=True)
    def train_step(mf, dtype=None, compiled=False):
        """A training step's closure (its own model and optimiser), warmed up (compiled first, when asked)."""
        m = timm.create_model(args.model, num_classes=3).to(memory_format=mf)
        if args.bn_frozen:  # train.bn = "frozen", the engine's default: BatchNorm layers in eval mode
            for mod in m.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        opt = torch.optim.Adam(m.parameters())
        x = torch.randn(64, 3, args.size, args.size).contiguous(memory_format=mf)
        y = torch.randint(0, 3, (64,))
        net = torch.compile(m) if compiled else m

        def step():
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        return step

    def versus(name_a: str, a, name_b: str, b, rounds: int = 3) -> tuple[float, float]:
        """Median img/s of two steps measured in alternating rounds (this VM's speed drifts between runs)."""
        got = {name_a: [], name_b: []}
        for _ in range(rounds):
            for name, fn in ((name_a, a), (name_b, b)):
                got[name].append(rate(fn, 64, args.seconds / rounds))
        out["train"][f"{name_a}_vs_{name_b}"] = got
        return statistics.median(got[name_a]), statistics.median(got[name_b])

    eager = train_step(torch.channels_last)
    t = out["train"]
    t["nchw"], t["channels_last"] = versus("nchw", train_step(torch.contiguous_format), "channels_last", eager)
    print(f"training step batch 64: NCHW {t['nchw']:.1f} img/s, channels_last {t['channels_last']:.1f} img/s "
          f"({t['channels_last'] / t['nchw']:.2f}x)", flush=True)
    # why CPU runs train in fp32 eager (engine/precision.py): bf16 autocast and torch.compile against it
    t["bf16"], fp32 = versus("bf16", train_step(torch.channels_last, torch.bfloat16), "fp32", eager)
    print(f"training step, channels_last: bf16 autocast {t['bf16']:.1f} img/s vs fp32 {fp32:.1f} "
          f"({t['bf16'] / fp32:.2f}x; CPU has AMX-BF16: {prov['amx_bf16']})", flush=True)
    if args.compile:
        t0 = time.perf_counter()
        compiled = train_step(torch.channels_last, compiled=True)
        took = t["compile_seconds"] = time.perf_counter() - t0
        t["compiled"], fp32 = versus("compiled", compiled, "eager", eager)
        print(f"training step, channels_last: torch.compile {t['compiled']:.1f} img/s vs eager {fp32:.1f} "
              f"({t['compiled'] / fp32:.2f}x; compiling and two steps {took:.0f} s)", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    for mode in ("default", "keep"):
        res = subprocess.run([sys.executable, "-c", _FAULTS, mode, args.model, str(args.size), str(args.threads)],
                             capture_output=True, text=True, env=env, check=True)
        faults, system, user, img_s = map(float, res.stdout.split())
        out["faults"][mode] = {"faults_per_step": faults, "system_seconds": system, "user_seconds": user,
                               "img_per_s": img_s}
    d, k = out["faults"]["default"], out["faults"]["keep"]
    print(f"page faults per training step: glibc defaults {d['faults_per_step']:.0f} (system {d['system_seconds']:.2f} s "
          f"of {d['system_seconds'] + d['user_seconds']:.1f} s CPU), keep_freed_memory {k['faults_per_step']:.0f} "
          f"(system {k['system_seconds']:.2f} s of {k['system_seconds'] + k['user_seconds']:.1f} s); "
          f"{k['faults_per_step'] / max(d['faults_per_step'], 1):.2f}x the defaults' faults", flush=True)
    out["provenance"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print("load average at the end:", out["provenance"]["load_end"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
