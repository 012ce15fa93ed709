"""A whole study on small real data: a finished run's fine-tuned backbone next to the same backbone before,
the two from-scratch baselines, skipped extractors, figures, resume, cancel, and the CLI around it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine.config import ConfigError, DataConfig, ModelConfig, RunConfig, StudyConfig, TrainConfig
from engine.store import RunStore, StoreError, StudyDir, cell_key
from engine.study import control
from engine.study.extractors import resolve
from engine.study.runner import COLUMNS, StudyRunner
from study import results

from .store_fixtures import add_to_grid, emit, finished_events, new_run

ROOT = Path(__file__).resolve().parents[1]
RUN_CFG = RunConfig(data=DataConfig(dataset="digits", image_size=32), model=ModelConfig(backbone="test_efficientnet",
                    head="linear", weights="random"), train=TrainConfig(strategy="full", epochs=1))
RUN = f"run:g/{RUN_CFG.run_id}"


def finished_run(root: Path, status_done: bool = True):
    """A grid g with one run whose best.safetensors is a real (random) test_efficientnet classifier."""
    from engine.checkpoint import save_checkpoint
    from engine.model_meta import ModelMeta
    from engine.models import build_classifier, norm_config

    gdir = add_to_grid(root, "g", [RUN_CFG])
    rd = new_run(gdir, RUN_CFG)
    model = build_classifier("test_efficientnet", "linear", 10)
    norm = norm_config(model.backbone)
    meta = ModelMeta(backbone="test_efficientnet", head="linear", classes=tuple(str(i) for i in range(10)),
                     image_size=32, mean=tuple(norm["mean"]), std=tuple(norm["std"]), in_chans_source=1,
                     run_id=rd.run_id, dataset="digits", epoch=1, val_loss=2.0)
    save_checkpoint(model, rd.best, meta)
    rd.write_results({"accuracy": 0.1, "train_seconds": 3.5})
    events = finished_events(RUN_CFG, [0.1], [2.0], test={"accuracy": 0.1})
    emit(rd, events if status_done else events[:-1])
    return rd


def small_study(name: str, extractors: tuple[str, ...], **kw) -> StudyConfig:
    settings = dict(name=name, datasets=("digits",), extractors=extractors, image_size=32, sample=100,
                    train_limit=300, baseline_epochs=1, kmeans_init=2, on_missing_weights="random", threads=1,
                    batch_size=64)
    return StudyConfig(**(settings | kw))


@pytest.fixture(scope="module")
def done_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    finished_run(root)
    cfg = small_study("s", (RUN, "small_cnn", "autoencoder"))
    sdir = control.prepare(cfg, root)
    lines = []
    status = StudyRunner(sdir, echo=lambda line, st: lines.append(line) if line else None).run()
    return root, sdir, status, lines


def test_extractors_resolve_with_the_runs_before(tmp_path):
    finished_run(tmp_path)
    store = RunStore(tmp_path)
    cfg = small_study("x", ("grid:g", "small_cnn", "efficientnet_lite0@96", "test_efficientnet@32", RUN))
    ex = resolve(cfg, store)
    assert [e.name for e in ex] == [RUN, "small_cnn", "efficientnet_lite0@96", "test_efficientnet@32"]
    run = ex[0]
    assert (run.kind, run.backbone, run.image_size, run.before, run.trained_on, run.strategy) == \
        ("run", "test_efficientnet", 32, "test_efficientnet@32", "digits", "full")
    assert ex[2].image_size == 96 and ex[2].kind == "pretrained"
    cfg = small_study("x", (RUN,))
    assert [e.name for e in resolve(cfg, store)] == [RUN, "test_efficientnet@32"]  # the before joins the study


@pytest.mark.parametrize("spec, message", [
    ("run:g", "expected run:GRID/RUN_ID"),
    ("run:g/nope", "no run 'nope' in grid 'g'"),
    ("grid:nope", "no grid 'nope'"),
    ("efficientnet_lite0@7", "expected BACKBONE@PX with PX 8 to 1024"),
    ("resnet5O", "unknown backbone 'resnet5O'"),
])
def test_bad_extractors_are_one_line_errors(tmp_path, spec, message):
    finished_run(tmp_path)
    with pytest.raises((ConfigError, StoreError, ValueError)) as err:
        resolve(small_study("x", (spec,)), RunStore(tmp_path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_run_not_finished_is_refused(tmp_path):
    finished_run(tmp_path, status_done=False)
    with pytest.raises(StoreError, match="is failed, not finished"):  # "running" with no live worker: failed
        resolve(small_study("x", (RUN,)), RunStore(tmp_path))


def test_study_scores_every_cell(done_study):
    root, sdir, status, lines = done_study
    assert status.status == "done", status.error
    assert (status.done, status.total) == (4, 4)
    frame = pd.read_csv(sdir.metrics_csv)
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert list(frame["extractor"]) == [RUN, "test_efficientnet@32", "small_cnn", "autoencoder"]  # study order
    assert set(frame["status"]) == {"done"}
    assert frame.set_index("extractor")["dim"].to_dict() == {RUN: frame["dim"][0], "test_efficientnet@32":
                                                             frame["dim"][0], "small_cnn": 256, "autoencoder": 128}
    assert (frame["n_test"] == 360).all() and (frame["silhouette_n"] == 100).all() and (frame["tsne_n"] == 100).all()
    assert (frame["probe_train_n"] == 300).all() and (frame["kmeans_n"] == 360).all()
    for col in ("silhouette", "silhouette_kmeans"):
        assert frame[col].between(-1, 1).all()
    assert (frame["davies_bouldin"] > 0).all() and frame["ari"].between(-0.5, 1).all()
    assert frame["nmi"].between(0, 1).all() and frame["knn_accuracy"].between(0, 1).all()
    assert (frame["img_per_s"] > 0).all() and (frame["extract_seconds"] > 0).all()
    # a supervised CNN separates digits far better than a random-init backbone
    by = frame.set_index("extractor")
    assert by.loc["small_cnn", "linear_probe_accuracy"] > 0.8
    assert by.loc["small_cnn", "nmi"] > by.loc["test_efficientnet@32", "nmi"]
    cell = sdir.cell(cell_key("digits", "test_efficientnet@32"))
    assert cell["weights"].startswith("random init") and cell["title"] == "test_efficientnet random init @32px"
    assert any("test_efficientnet@32: random init" in n for n in status.notes)
    run_cell = sdir.cell(cell_key("digits", RUN))
    assert run_cell["train_seconds"] == 3.5 and run_cell["before"] == "test_efficientnet@32"
    assert any(line.startswith("digits / small_cnn: silhouette") for line in lines)


def test_the_data_comes_through_the_stores_dataset_cache(done_study):
    root, sdir, _, _ = done_study
    assert {c["data_cache"] for c in sdir.cells()} == {"built"}  # the study decoded digits into the store's cache
    from engine.study import adapter

    again, how = adapter.load_splits("digits", sdir.config(), RunStore(root).dataset_cache)
    assert how == "hit"  # a later study (or run) of the store reads it back: the same bits
    fresh, off = adapter.load_splits("digits", sdir.config())
    assert off == "off" and torch.equal(again.test.x, fresh.test.x) and torch.equal(again.train.y, fresh.train.y)


def test_every_panel_shows_the_same_points(done_study):
    _, sdir, _, _ = done_study
    found = results.points(sdir, [cell_key("digits", e) for e in (RUN, "test_efficientnet@32", "small_cnn",
                                                                   "autoencoder")])
    assert len(found) == 4 and results.same_points(found)
    with np.load(sdir.sample_file("digits")) as sample:
        np.testing.assert_array_equal(next(iter(found.values()))["positions"], sample["positions"])
        assert np.bincount(sample["labels"]).tolist() == [10] * 10  # class-balanced
    csv = pd.read_csv(sdir.points_csv("digits"))
    assert len(csv) == 4 * 100 and set(csv["extractor"]) == {RUN, "test_efficientnet@32", "small_cnn", "autoencoder"}


def test_figures_are_drawn(done_study):
    _, sdir, _, _ = done_study
    names = {p.name for p in sdir.figures()}
    assert names == {"pca_digits.png", "tsne_digits.png", "metrics_digits.png",
                     f"before_after_{cell_key('digits', RUN)}.png"}
    from PIL import Image

    for p in sdir.figures():
        with Image.open(p) as im:
            assert im.size[0] > 600 and im.size[1] > 150


def test_targets_read_the_pairs(done_study):
    _, sdir, _, _ = done_study
    frame = results.table(sdir)
    checks = results.finetune_targets(frame)
    assert [c.name for c in checks] == [f"{RUN} on digits (classes)", f"{RUN} on digits (k-means)"]
    after = frame.set_index("extractor").loc[RUN]
    before = frame.set_index("extractor").loc["test_efficientnet@32"]
    for check, definition in zip(checks, results.DEFINITIONS.values()):
        expect = sum(results.better(k, after[k], before[k]) for k in definition)
        assert check.met == (expect == 4) and f"({expect} of 4 better)" in check.line
    assert results.seed_targets(frame) == []  # no full Fashion-MNIST cell in this study


def test_running_it_again_resumes_and_computes_nothing(done_study):
    root, sdir, _, _ = done_study
    before = {c["extractor"]: c["finished"] for c in sdir.cells()}
    status = StudyRunner(sdir).run()
    assert status.status == "done" and (status.done, status.total) == (4, 4)
    assert {c["extractor"]: c["finished"] for c in sdir.cells()} == before
    with pytest.raises(ConfigError, match="already exists .* with another config"):
        control.prepare(small_study("s", ("small_cnn",)), root)


def test_cancel_stops_a_study_and_it_resumes(tmp_path):
    cfg = small_study("c", ("small_cnn",))
    sdir = control.prepare(cfg, tmp_path)

    def echo(line, st):
        if "extracting" in line or "training" in line:
            sdir.request_cancel("test says stop")

    status = StudyRunner(sdir, echo=echo).run()
    assert status.status == "cancelled" and "test says stop" in status.message
    assert sdir.status().status == "cancelled" and sdir.cells() == []
    status = StudyRunner(sdir).run()  # the cancel file is cleared when it starts again
    assert status.status == "done" and len(sdir.cells()) == 1


def test_unavailable_weights_skip_with_one_line(tmp_path):
    sdir = control.prepare(small_study("w", ("resnet50", "small_cnn"), on_missing_weights="skip"), tmp_path)
    status = StudyRunner(sdir).run()
    assert status.status == "done"
    assert [n for n in status.notes if n.startswith("extractor resnet50@32: skipped: pretrained weights for "
                                                    "resnet50 unavailable")]
    frame = pd.read_csv(sdir.metrics_csv).set_index("extractor")
    assert frame.loc["resnet50@32", "status"] == "skipped" and "unavailable" in frame.loc["resnet50@32", "note"]
    assert frame.loc["small_cnn", "status"] == "done"
    from study.cli import summary_text

    (row,) = [ln for ln in summary_text(sdir).splitlines() if ln.strip().startswith("resnet50@32")]
    assert row.split()[1:6] == ["skipped:", "pretrained", "weights", "for", "resnet50"]  # a row of the table
    failing = control.prepare(small_study("w2", ("resnet50",), on_missing_weights="fail"), tmp_path)
    status = StudyRunner(failing).run()
    assert status.status == "failed" and "pretrained weights for resnet50 unavailable" in status.error


# --- the command line ------------------------------------------------------------------------


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--extractors", "run:g/nope"], "no run 'nope' in grid 'g'"),
    (["--datasets", "mnist", "--data-root", "{root}"], "dataset 'mnist' needs MNIST"),
    (["--sample", "5"], "command line study.sample: 5 is out of range"),
    (["--set", "study.knn=3"], "--set study.knn: unknown key; did you mean study.knn_k?"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, args, message):
    finished_run(tmp_path)
    args = [a.replace("{root}", str(tmp_path)) for a in args]
    proc = _cli("study", "run", "--runs", str(tmp_path), "--extractors", "small_cnn", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finetune-tui: error: ") and message in lines[0]


def test_cli_show_config_makes_the_checks_the_run_makes(tmp_path):
    finished_run(tmp_path)
    base = ("study", "run", "--runs", str(tmp_path), "--show-config")
    bad = _cli(*base, "--extractors", "run:g/nope")  # printed as a valid study before
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "finetune-tui: error: no run 'nope' in grid 'g'; `finetune-tui runs --grid g` lists them"], bad.stderr
    unknown = _cli(*base, "--datasets", "nope")
    assert unknown.returncode == 2 and "dataset 'nope' not found" in unknown.stderr
    missing = _cli(*base, "--datasets", "mnist", "--data-root", str(tmp_path))  # data not there yet: said, not fatal
    assert missing.returncode == 0 and 'datasets = ["mnist"]' in missing.stdout
    assert missing.stderr.startswith("finetune-tui: warning: dataset 'mnist' needs MNIST")


def test_cli_show_config_round_trips(tmp_path):
    proc = _cli("study", "run", "--datasets", "digits", "--extractors", "small_cnn,efficientnet_lite0@96",
                "--sample", "300", "--show-config")
    assert proc.returncode == 0, proc.stderr
    f = tmp_path / "s.toml"
    f.write_text(proc.stdout)
    again = _cli("study", "run", "--study", str(f), "--show-config")
    assert again.stdout.replace("'s'", "'study'").replace('"s"', '"study"') == proc.stdout
    assert 'extractors = ["small_cnn", "efficientnet_lite0@96"]' in proc.stdout


def test_cli_detached_study_outlives_its_starter(tmp_path):
    proc = _cli("study", "run", "--runs", str(tmp_path), "--name", "bg", "--datasets", "digits", "--extractors",
                "small_cnn", "--sample", "100", "--train-limit", "200", "--baseline-epochs", "1", "--threads", "1",
                "--detach")
    assert proc.returncode == 0, proc.stderr
    assert "started in the background" in proc.stdout
    sdir = StudyDir(tmp_path / "bg")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and sdir.status().status in ("queued", "running"):
        time.sleep(0.5)
    st = sdir.status()
    assert st.status == "done", (st, sdir.log_file.read_text()[-2000:])
    assert not sdir.running() and len(sdir.cells()) == 1
    listed = _cli("study", "list", "--runs", str(tmp_path))
    assert listed.returncode == 0 and listed.stdout.split()[:3] == ["bg", "done", "1/1"]
    shown = _cli("study", "show", "bg", "--runs", str(tmp_path), "--format", "json")
    rows = json.loads(shown.stdout)
    assert [r["extractor"] for r in rows] == ["small_cnn"] and rows[0]["n_test"] == 360
    cancelled = _cli("study", "cancel", "bg", "--runs", str(tmp_path))
    assert cancelled.returncode == 0 and "(it is not running)" in cancelled.stdout


def test_a_study_beside_a_grids_run_takes_the_cores_it_leaves(tmp_path, monkeypatch):
    import torch

    from engine.cpu_claims import ENV, claimed

    monkeypatch.setenv(ENV, str(tmp_path / "host"))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    code = ("from engine.cpu_claims import Claim\nc = Claim(3).start()\nprint('ready', flush=True)\n"
            "import time; time.sleep(120)")
    grid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
    before = torch.get_num_threads()
    try:
        assert grid.stdout.readline().strip() == "ready"
        sdir = control.prepare(small_study("beside", ("small_cnn",), threads=0, device="cpu"), tmp_path)
        status = StudyRunner(sdir).run()
        assert status.status == "done", status.error
        assert torch.get_num_threads() == 1  # 4 cores, 3 of them the grid's
        assert ("1 run(s) of grids on this host use 3 CPU thread(s): the study gets 1 of 4 cores (study.threads "
                "sets a number)") in status.notes
        assert claimed() == (1, 3)  # the study's own claim went with it
    finally:
        torch.set_num_threads(before)
        grid.kill()
        grid.wait()
