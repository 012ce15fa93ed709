"""Resuming: an epoch's checkpoint is one unit, a resumed run equals an uninterrupted one, a bad point is refused.

Every case trains the same config twice, once straight through and once
stopped (mid-epoch, or between the files of a checkpoint) and resumed, and
compares metrics (per-epoch losses within 1e-6 on the CPU) and final weights.
"""

import json

import pytest
import torch

import engine.resume
import engine.trainer
from engine.checkpoint import load_classifier
from engine.config import GridConfig
from engine.orchestrator import Orchestrator
from engine.store import GridDir, RunDir, load_run
from engine.trainer import Trainer
from engine.worker import main as worker_main
from tests.trainer_fixtures import (
    assert_same_training,
    make_run,
    metrics_of,
    of_type,
    resume_point,
)


def stop_in_epoch(monkeypatch, epoch: int, step: int = 2) -> None:
    """Ctrl-C after ``step`` training batches of ``epoch``: the shuffle, augmentation and dropout RNGs have moved on."""
    progress = Trainer._progress

    def stopping(self, phase, step_, steps, loss, rate, epoch_=0):
        progress(self, phase, step_, steps, loss, rate, epoch_)
        if phase == "train" and epoch_ == epoch and step_ == step:
            raise KeyboardInterrupt("stopped by the test")

    monkeypatch.setattr(Trainer, "_progress", stopping)


def interrupted_then_resumed(monkeypatch, rdir, stop) -> list[int]:
    """Run ``rdir`` with ``stop`` patched in, then again without it; the started events' resumed_from_epoch."""
    with monkeypatch.context() as m:
        stop(m)
        assert worker_main([str(rdir)]) in (0, 1)
    assert load_run(rdir).summary.status in ("cancelled", "failed")
    assert worker_main([str(rdir)]) == 0
    assert load_run(rdir).summary.status == "done"
    return [e.resumed_from_epoch for e in of_type(rdir, "started")]


CASES = {
    # augmentation draws from its own generator, the seed head's dropout from torch's, the shuffle from a third
    "augment+dropout": (dict(strategy="partial", epochs=3, head="seed", data={"augment": True}), 3, [0, 2]),
    # gradual, 2 epochs a stage: stopped in epoch 4 resumes after epoch 3, in the middle of stage 1 (optimizer and
    # plateau scheduler restored); stopped in epoch 3 resumes on a stage boundary (new optimizer, patience reset)
    "gradual mid-stage": (dict(strategy="gradual", epochs=5, gradual_stages=2, gradual_stage_epochs=2, lr=3e-3,
                               patience=2, plateau_patience=1), 4, [0, 3]),
    "gradual boundary": (dict(strategy="gradual", epochs=5, gradual_stages=2, gradual_stage_epochs=2, lr=3e-3,
                              patience=2, plateau_patience=1), 3, [0, 2]),
    "frozen, cached features": (dict(strategy="frozen", epochs=3), 2, [0, 1]),
    # issue 10's state: the head warm-up's switch, a per-step cosine, the EMA weights, Mixup/CutMix (numpy's RNG),
    # TrivialAugment (torch's) and random erasing (Python's); stopped in the second stage
    "two_stage, cosine, EMA, mixup, augment": (
        dict(strategy="two_stage", epochs=4, head_epochs=2, lr=3e-3, schedule="cosine", warmup_epochs=0.5, ema=True,
             ema_decay=0.9, mixup=0.4, cutmix=1.0, clip_grad=1.0, label_smoothing=0.1,
             data={"auto_augment": "trivialaugment", "random_erasing": 0.5}), 4, [0, 3]),
    # the range test runs once: a resumed run takes its LR from the point and trains the same
    "lr find, one-cycle": (dict(strategy="partial", epochs=3, lr="find", lr_find_steps=12, schedule="onecycle"), 2,
                           [0, 1]),
}


@pytest.mark.parametrize("case", CASES)
def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch, case):
    cfg, stop_epoch, resumed = CASES[case]
    straight, stopped = make_run(tmp_path, "straight", **cfg), make_run(tmp_path, "stopped", **cfg)
    assert worker_main([str(straight)]) == 0
    assert interrupted_then_resumed(monkeypatch, stopped, lambda m: stop_in_epoch(m, stop_epoch)) == resumed
    assert_same_training(straight, stopped)
    if cfg.get("lr") == "find":
        assert len(of_type(stopped, "lr_find")) == 1  # not run again on resume
        assert resume_point(stopped)["extra"]["found_lr"] == resume_point(straight)["extra"]["found_lr"]
    if cfg.get("ema"):
        for a, b in zip(resume_point(straight)["extra"]["ema"]["weights"].values(),
                        resume_point(stopped)["extra"]["ema"]["weights"].values()):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    if cfg["strategy"] == "gradual":
        assert metrics_of(stopped)["stage"].tolist() == [0, 0, 1, 1, 2]
        # each stage is announced as it is entered, a resumed run's too
        stages = {e.message for e in of_type(straight, "log")}
        assert len(stages) == 2 and {e.message for e in of_type(stopped, "log")} == stages


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A frozen 3-epoch run straight through (val loss improves every epoch: each writes best.safetensors)."""
    rdir = make_run(tmp_path_factory.mktemp("ref"), "straight", strategy="frozen", epochs=3)
    assert worker_main([str(rdir)]) == 0
    assert metrics_of(rdir).is_best.tolist() == [True, True, True]
    return rdir


def stop_after_write(monkeypatch, owner, name: str, epoch: int, epoch_of) -> None:
    """Ctrl-C right after ``owner.name`` wrote epoch ``epoch``'s file: a kill between the files of one checkpoint."""
    write = getattr(owner, name)

    def stopping(*args, **kwargs):
        write(*args, **kwargs)
        if epoch_of(*args, **kwargs) == epoch:
            raise KeyboardInterrupt(f"stopped after {name}")

    monkeypatch.setattr(owner, name, stopping)


KILL_POINTS = {
    # (what was written last, how to tell its epoch from the call's arguments)
    "after the resume point": (engine.resume, "save", lambda run_dir, model, opt, sched, state, *rest: state.epoch),
    "after best.safetensors": (engine.trainer, "save_checkpoint", lambda model, path, meta: meta.epoch),
    "after metrics.csv": (RunDir, "write_metrics", lambda self, rows: len(rows)),
}


@pytest.mark.parametrize("epoch", [2, 3])  # 3: the last one, nothing trains after the resume to cover a gap
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_between_checkpoint_files_neither_retrains_nor_loses_an_epoch(tmp_path, monkeypatch, reference, point,
                                                                          epoch):
    owner, name, epoch_of = KILL_POINTS[point]
    rdir = make_run(tmp_path, "killed", strategy="frozen", epochs=3)
    resumed = interrupted_then_resumed(monkeypatch, rdir, lambda m: stop_after_write(m, owner, name, epoch, epoch_of))
    assert resumed == [0, epoch]  # the epoch was saved as a unit: not trained again
    assert_same_training(reference, rdir)
    # the epoch events a kill cut off are replayed: the stream has every epoch once the run is done
    summary, ref_summary = load_run(rdir).summary, load_run(reference).summary
    assert summary.val_loss_history == pytest.approx(ref_summary.val_loss_history, abs=1e-9)
    assert sorted({e.epoch for e in of_type(rdir, "epoch")}) == [1, 2, 3]
    assert all("refused" not in e.message for e in of_type(rdir, "log"))


def rewrite_point(rdir, change) -> None:
    point = resume_point(rdir)
    change(point)
    torch.save(point, rdir / "last_state.pt")


def first_best_epoch(point):
    point["loop"]["best_epoch"] = 1
    point["loop"]["best_val_loss"] = point["rows"][0]["val_loss"]


def older_format(point):
    for key in ("format", "model", "rows", "events"):
        del point[key]


def other_optimizer_groups(point):
    # the optimizer of another trainable set: the point's files all agree, but it doesn't fit once the weights are in
    point["optimizer"]["param_groups"][0]["params"] = point["optimizer"]["param_groups"][0]["params"][:-1]


REFUSALS = {
    "best.safetensors of another epoch": (first_best_epoch, "best.safetensors holds epoch 3 but last_state.pt's best "
                                                            "is epoch 1"),
    "older format": (older_format, "last_state.pt is in an older format"),
    # found once the point's weights are in the model: the model is built anew, not trained on from there
    "optimizer of another run": (other_optimizer_groups, "last_state.pt doesn't fit this run (ValueError: "),
}


@pytest.mark.parametrize("refusal", REFUSALS)
def test_refused_point_restarts_from_the_fresh_model_and_says_so(tmp_path, caplog, reference, refusal):
    change, why = REFUSALS[refusal]
    rdir = make_run(tmp_path, "refused", strategy="frozen", epochs=3)
    assert worker_main([str(rdir)]) == 0
    rewrite_point(rdir, change)
    assert worker_main([str(rdir)]) == 0
    started = of_type(rdir, "started")
    assert [s.resumed_from_epoch for s in started] == [0, 0]
    # the fresh model, not the point's (half-)loaded weights: same initial norms, same training as a fresh run
    assert started[1].initial_norms == started[0].initial_norms
    assert_same_training(reference, rdir)
    warning = of_type(rdir, "log")[-1]
    assert warning.level == "warning"
    assert warning.message.startswith(f"checkpoint refused: {why}") and warning.message.endswith(
        "; restarted from scratch")
    assert "weights_only" not in caplog.text


def test_damaged_best_of_the_points_own_epoch_is_rewritten_from_the_point(tmp_path, reference):
    rdir = make_run(tmp_path, "torn", strategy="frozen", epochs=3)
    assert worker_main([str(rdir)]) == 0
    (rdir / "best.safetensors").write_bytes(b"torn")
    (rdir / "metrics.csv").write_text("epoch,train_loss\n1,2.0\n")
    assert worker_main([str(rdir)]) == 0
    assert [s.resumed_from_epoch for s in of_type(rdir, "started")] == [0, 3]
    assert_same_training(reference, rdir)
    model, meta = load_classifier(rdir / "best.safetensors")
    assert meta["epoch"] == 3 and model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    """Every RNG the point holds continues its sequence after torch.save + torch.load(weights_only=True)."""
    import random

    import numpy as np

    from engine.resume import capture_rng, restore_rng

    gens = {"shuffle": torch.Generator().manual_seed(1), "augment": torch.Generator().manual_seed(2)}

    def draw():
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(1).tolist(), random.random(),
                random.gauss(0, 1), torch.randperm(10, generator=gens["shuffle"]).tolist(),
                torch.rand(2, generator=gens["augment"]).tolist())

    draw()
    np.random.randn(1)  # leave numpy's cached Gaussian set: it is part of the state
    torch.save(capture_rng(cuda=False, generators=gens), tmp_path / "rng.pt")
    expected = draw()
    draw()
    saved = torch.load(tmp_path / "rng.pt", weights_only=True)
    assert restore_rng(saved, cuda=False, generators=gens) == []
    assert draw() == expected
    # a generator with no saved state (augmentation switched on since) keeps its seed and is named
    late = {"shuffle": gens["shuffle"], "augment": None, "extra": torch.Generator().manual_seed(3)}
    assert restore_rng(saved, cuda=False, generators=late) == ["extra"]


def test_finished_run_whose_results_are_gone_is_failed_and_resume_tests_it_again(tmp_path, reference):
    rdir = make_run(tmp_path, "lost", strategy="frozen", epochs=3)
    assert worker_main([str(rdir)]) == 0
    results = json.loads((rdir / "results.json").read_text())
    (rdir / "results.json").unlink()
    summary = load_run(rdir).summary
    assert summary.status == "done" and summary.test_accuracy == results["accuracy"]  # from the finished event
    assert summary.notes == ["results.json is missing (deleted?); `finetune-tui resume grid` tests it again from its "
                             "last checkpoint"]
    GridDir(rdir.parent).write_info(GridConfig(name="grid"), [rdir.name])
    assert [rd.run_id for rd in Orchestrator(rdir.parent).pending()] == ["lost"]  # what resume starts again
    assert worker_main([str(rdir)]) == 0
    assert [s.resumed_from_epoch for s in of_type(rdir, "started")] == [0, 3]  # no epoch trained again
    again = json.loads((rdir / "results.json").read_text())
    assert again["accuracy"] == results["accuracy"] and again["confusion_matrix"] == results["confusion_matrix"]
    assert load_run(rdir).summary.notes == []


def test_finished_run_whose_kept_weights_are_gone_is_resumed_and_gets_them_back(tmp_path, reference):
    from export.api import ExportError, export_run

    rdir = make_run(tmp_path, "lost", strategy="frozen", epochs=3)
    GridDir(rdir.parent).write_info(GridConfig(name="grid"), [rdir.name])
    assert worker_main([str(rdir)]) == 0
    assert Orchestrator(rdir.parent).pending() == []
    (rdir / "best.safetensors").unlink()
    summary = load_run(rdir).summary
    assert summary.status == "done"  # its results stand; only export needs the file
    assert summary.notes == []
    with pytest.raises(ExportError, match=r"has no best.safetensors: .* \(`finetune-tui resume grid` rebuilds it\)"):
        export_run(rdir)
    assert [rd.run_id for rd in Orchestrator(rdir.parent).pending()] == ["lost"]  # what resume starts again
    assert worker_main([str(rdir)]) == 0
    assert [s.resumed_from_epoch for s in of_type(rdir, "started")] == [0, 3]
    assert_same_training(reference, rdir)
    assert load_classifier(rdir / "best.safetensors")[1]["epoch"] == 3
    assert load_run(rdir).summary.notes == []


def test_kept_weights_of_an_earlier_epoch_gone_retrains_the_run(tmp_path, reference):
    rdir = make_run(tmp_path, "lost", strategy="frozen", epochs=3)
    assert worker_main([str(rdir)]) == 0
    rewrite_point(rdir, first_best_epoch)  # the point now keeps epoch 1, whose weights only best.safetensors had
    (rdir / "best.safetensors").unlink()
    (rdir / "results.json").unlink()
    summary = load_run(rdir).summary
    assert summary.results_missing
    assert worker_main([str(rdir)]) == 0
    assert [s.resumed_from_epoch for s in of_type(rdir, "started")] == [0, 0]
    assert of_type(rdir, "log")[-1].message == ("checkpoint refused: best.safetensors is missing or unreadable, but "
                                                "last_state.pt's best is epoch 1 (ModelMetaError); restarted from "
                                                "scratch")
    assert_same_training(reference, rdir)
    assert load_run(rdir).summary.status == "done"
