"""Fault suite, out of memory (issue 15, item 3): both kinds are labelled ``oom`` with a figure and a smaller batch.

A real `finetune-tui run` trains a batch far too big for the memory it is given: once under an
address-space limit (``ulimit -v``: PyTorch's CPU allocator fails), once inside a memory cgroup with a
limit (the kernel's OOM killer sends SIGKILL). Where a cgroup can't be made, that test says why and skips.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time

from engine.failures import MemoryWatch
from tests.faults_fixtures import TINY, MemoryCgroup, cli, import_footprint, rows

GB = 1 << 30
# 512 digits upsampled to 224 px: test_efficientnet's first activations alone want over 600 MB per tensor
TOO_BIG = ["--image-size", "224", "--batch-size", "512", "--strategies", "full", "--epochs", "1"]


def test_a_failed_cpu_allocation_is_oom_with_the_size_and_a_smaller_batch(tmp_path):
    # torch and timm take gigabytes of address space just to import (about 3.7 GB on a CPU build): room for
    # that, the data and the model, not for the batch
    limit = import_footprint()[0] + int(1.3 * GB)

    def ulimit_v():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = cli("run", *TINY, *TOO_BIG, "--name", "big", "--runs", str(tmp_path), preexec_fn=ulimit_v)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr
    (row,) = rows(tmp_path).values()
    assert row["status"] == "failed" and row["error_kind"] == "oom"
    assert re.fullmatch(rf"out of host memory at batch size 512: a \d+ MB allocation failed \(address-space "
                        rf"limit {limit / 1e9:.1f} GB\): try --batch-size 256, or lower --concurrency", row["error"])
    assert "FAILED: out of host memory at batch size 512" in done.stdout  # the run's own progress line
    table = " ".join(cli("runs", "--runs", str(tmp_path)).stdout.split())
    assert "failed (oom): out of host memory at batch size 512" in table


def test_a_worker_the_oom_killer_ends_is_oom_with_the_limit_and_a_smaller_batch(tmp_path):
    limit = 2 * import_footprint()[1] + GB  # the orchestrator and one worker fit; the big batch doesn't
    group = MemoryCgroup(limit=limit)
    try:
        done = cli("run", *TINY, *TOO_BIG, "--name", "big", "--runs", str(tmp_path), preexec_fn=group.enter)
        assert group.oom_kills() >= 1  # the kernel's OOM killer did end it
    finally:
        group.remove()
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr
    (row,) = rows(tmp_path).values()
    assert row["status"] == "failed" and row["error_kind"] == "oom", row["error"]
    page = os.sysconf("SC_PAGE_SIZE")  # the kernel keeps the limit in whole pages
    assert re.fullmatch(rf"killed by the kernel's out-of-memory killer at batch size 512 \(peak [\d.]+ [MG]B, memory "
                        rf"limit {limit // page * page / 1e9:.1f} GB\): try --batch-size 256, or lower --concurrency",
                        row["error"])


def test_a_plain_sigkill_is_not_taken_for_oom(tmp_path):
    """A SIGKILL without an OOM kill counted and far below the limit stays ``killed``."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50 << 20); time.sleep(60)"])
    try:
        watch = MemoryWatch(proc.pid)
        for _ in range(300):  # Python's start-up, on a busy machine
            watch.sample()
            if watch.peak > 50 << 20:
                break
            time.sleep(0.1)
        assert watch.peak > 50 << 20 and watch.limit and watch.peak < watch.limit
        proc.kill()
        proc.wait()
        assert not watch.oom_killed()
        assert watch.failure(64).message.endswith("try --batch-size 32, or lower --concurrency")
    finally:
        proc.kill()


def test_a_dying_worker_seen_in_the_root_cgroup_keeps_the_limit_it_had(tmp_path, monkeypatch):
    """A worker the OOM killer is ending can show the root cgroup (older kernels) on its last sample; the
    limit in its message stays its own cgroup's, not the machine's RAM (CI once printed 25.3 GB for 2.8 GB)."""
    import engine.failures as failures

    def group(name, limit, kills):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (folder / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
        return failures.MemoryCgroup(folder, v2=False)

    child, root = group("child", 2_818_572_288, 0), group("root", 9223372036854771712, 0)
    views = iter([[child, root], [child, root], [root]])  # the last sample: the dying worker's view
    monkeypatch.setattr(failures, "memory_cgroups", lambda pid: next(views))
    watch = MemoryWatch(os.getpid())
    for _ in range(3):
        watch.sample()
    assert watch.limit == 2_818_572_288
    (child.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert watch.oom_killed()
    assert re.fullmatch(r"killed by the kernel's out-of-memory killer at batch size 64 \(peak [\d.]+ [MG]B, "
                        r"memory limit 2\.8 GB\): try --batch-size 32, or lower --concurrency", watch.failure(64).message)
