"""Liveness across hosts: a worker's heartbeat decides for runs on other machines (a flock can't reach
them), the flock for this one's; a dead remote run names the host that stopped beating; hosts show in
`runs` (within 80 columns) and the TUI's runs table when a grid trained on more than one machine (the
detail view's config always says host / pid)."""

from __future__ import annotations

import io
import json
import os
import time

from rich.console import Console

from engine import events as ev
from engine.config import RunConfig, TrainConfig
from engine.console import runs_table
from engine.store import RunDir, load_run
from engine.store import heartbeat as hb
from engine.store.heartbeat import Heartbeater, local_host, read_heartbeat, write_heartbeat
from tests.store_fixtures import add_to_grid, emit, finished_events


def new_run(root, grid: str, strategy: str) -> RunDir:
    cfg = RunConfig(train=TrainConfig(strategy=strategy, epochs=3))
    rd = add_to_grid(root, grid, [cfg]).run(cfg.run_id)
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.write_config(cfg)
    return rd


def done_on(rd: RunDir, host: str, val_accs: list[float], val_losses: list[float]) -> None:
    events = finished_events(rd.config(), val_accs, val_losses)
    started = events[0]
    emit(rd, [ev.Started(run_id=started.run_id, pid=1, host=host, device="cpu", config=started.config)] + events[1:])


def beat(rd: RunDir, host: str, age: float) -> None:
    rd.heartbeat_file.write_text(json.dumps({"host": host, "pid": 4242, "ts": time.time() - age}))


def running(rd: RunDir, host: str) -> None:
    emit(rd, [ev.Started(run_id=rd.run_id, pid=4242, host=host, device="cpu", config={"train": {"epochs": 3}}),
              ev.Epoch(epoch=1, epochs=3, train_loss=1.0, train_acc=0.5, val_loss=1.0, val_acc=0.5, lr=0.1,
                       img_per_s=10.0, seconds=1.0)])


def test_a_remote_run_lives_while_it_beats_and_dies_when_it_stops(tmp_path):
    rd = new_run(tmp_path, "g", "full")
    running(rd, "node-7")
    beat(rd, "node-7", age=2)
    assert rd.alive() and rd.liveness().remote  # no flock is held here: the heartbeat decides
    assert load_run(rd).summary.status == "running"
    beat(rd, "node-7", age=hb.HEARTBEAT_TIMEOUT + 5)
    assert not rd.alive()
    s = load_run(rd).summary
    assert s.status == "failed" and s.error_kind == "killed"
    assert s.error.startswith("worker stopped without a final event (no heartbeat from node-7 for 3")
    assert s.error.endswith("s); run the grid again to resume it")


def test_a_local_run_is_told_by_its_flock_whatever_its_heartbeat_says(tmp_path):
    rd = new_run(tmp_path, "g", "full")
    running(rd, local_host())
    beat(rd, local_host(), age=1)  # a fresh beat, but no process holds run.lock: dead (killed a moment ago)
    assert not rd.alive() and not rd.liveness().remote
    assert load_run(rd).summary.status == "failed"
    lock = rd.lock()
    assert lock.acquire()
    try:
        beat(rd, local_host(), age=hb.HEARTBEAT_TIMEOUT * 10)  # stale beat, held lock: the flock wins here
        assert rd.alive()
    finally:
        lock.release()


def test_heartbeater_beats_and_takes_its_file_away(tmp_path, monkeypatch):
    monkeypatch.setenv(hb.HOST_ENV, "gpu-box-3")
    path = tmp_path / "heartbeat.json"
    beater = Heartbeater(path, every=0.05).start()
    first = read_heartbeat(path)
    assert first is not None and first.host == "gpu-box-3" and first.pid == os.getpid() and first.fresh()
    time.sleep(0.3)
    assert read_heartbeat(path).ts > first.ts  # it kept beating
    beater.stop()
    assert not path.exists()
    path.write_text("{torn")
    assert read_heartbeat(path) is None  # an unreadable beat is no beat
    write_heartbeat(path, host="other")
    assert read_heartbeat(path).host == "other"


def test_runs_shows_hosts_of_a_cluster_grid_within_80_columns(tmp_path):
    for strategy, host in (("full", "node-a#1f2e3d"), ("partial", "node-b#9a8b7c")):
        done_on(new_run(tmp_path, "g", strategy), host, [0.5, 0.6], [0.9, 0.8])
    records = [load_run(p) for p in sorted((tmp_path / "g").iterdir()) if RunDir(p).is_run()]
    assert {r.summary.host for r in records} == {"node-a#1f2e3d", "node-b#9a8b7c"}
    wide = Console(file=io.StringIO(), width=160)
    wide.print(runs_table(records))
    text = wide.file.getvalue()
    assert "host" in text and "node-a#1f2e3d" in text and "node-b#9a8b7c" in text and "time" in text
    narrow = Console(file=io.StringIO(), width=80)
    narrow.print(runs_table(records))
    lines = narrow.file.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("host" in line for line in lines)


def test_runs_of_one_machine_show_no_host_column(tmp_path):
    for strategy in ("full", "partial"):
        done_on(new_run(tmp_path, "g", strategy), local_host(), [0.5], [0.9])
    records = [load_run(p) for p in sorted((tmp_path / "g").iterdir()) if RunDir(p).is_run()]
    console = Console(file=io.StringIO(), width=160)
    console.print(runs_table(records))
    assert " host " not in console.file.getvalue() and local_host() not in console.file.getvalue()


def test_the_ray_executor_without_ray_is_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from finetune_tui.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["run", "--runs", str(tmp_path), "--datasets", "digits", "--backbones", "test_efficientnet",
                 "--strategies", "frozen", "--epochs", "1", "--image-size", "32", "--weights", "random",
                 "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "finetune-tui: error: the ray executor needs Ray: pip install 'finetune-tui[ray]' (or pip install ray)\n"
    assert not any(tmp_path.iterdir())  # refused before any folder was made


def test_executor_keys_go_through_the_one_parser(tmp_path, capsys):
    import pytest

    from engine.config import ConfigError, GridConfig, load_grid_file
    from finetune_tui.cli import main

    path = tmp_path / "g.toml"
    path.write_text('executor = "ray"\nray_address = "10.0.0.5:6379"\nretries = 3\n')
    grid = load_grid_file(path)
    assert (grid.executor, grid.ray_address, grid.retries) == ("ray", "10.0.0.5:6379", 3)
    assert GridConfig.from_dict(grid.to_dict(), stored=True) == grid
    with pytest.raises(ConfigError, match="executor: 'slurm' is not one of local, ray"):
        GridConfig.from_layers(({"executor": "slurm"}, "g.toml"))
    code = main(["run", "--runs", str(tmp_path), "--grid", str(path), "--executor", "local", "--ray-address", "auto",
                 "--datasets", "digits", "--show-config"])
    out = capsys.readouterr().out
    assert code == 0 and 'executor = "local"' in out and 'ray_address = "auto"' in out and "retries = 3" in out
