"""Recipes (issue 10): schedules, two_stage, Mixup/CutMix, augmentation policies, EMA, LR range test, BatchNorm mode."""

import json
import math

import numpy as np
import pytest
import torch

from engine.augment import AugmentPolicy, soft_cross_entropy
from engine.config import DataConfig, RunConfig, TrainConfig
from engine.lr_find import lr_at, range_test, valley
from engine.schedules import build_schedule
from engine.strategies import n_stages, plan, stage_for_epoch, stage_span, warmup_over
from engine.worker import main as worker_main
from tests.trainer_fixtures import make_run, metrics_of, of_type, resume_point


def _optimizer(*lrs):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def _lrs(schedule, opt, steps):
    out = []
    for _ in range(steps):
        opt.step()
        schedule.after_step()
        out.append([g["lr"] for g in opt.param_groups])
    return out


def test_cosine_schedule_warms_up_then_follows_the_cosine_per_step_keeping_group_ratios():
    opt = _optimizer(1e-3, 1e-4)
    cfg = TrainConfig(schedule="cosine", warmup_epochs=1, cosine_floor=0.01)
    sched = build_schedule(opt, cfg, epochs=4, steps_per_epoch=10)  # 40 steps, 10 of warm-up
    lrs = _lrs(sched, opt, 40)
    # warm-up: linear from 0, one tenth of the LR per step
    assert lrs[0][0] == pytest.approx(1e-4) and lrs[4][0] == pytest.approx(5e-4)
    # cosine over all 40 steps (timm, warmup_prefix=False): at step t, floor + (lr - floor)(1 + cos(pi t/40))/2
    floor = 0.01 * 1e-4
    for t in (10, 20, 30):
        want = floor + (1e-3 - floor) * 0.5 * (1 + math.cos(math.pi * t / 40))
        assert lrs[t - 1][0] == pytest.approx(want, rel=1e-6)
    assert lrs[19][0] == pytest.approx(5e-4 + floor / 2, rel=1e-6)  # half-way: half the LR
    assert lrs[-1][0] == pytest.approx(floor, rel=1e-6)
    # the second group follows its own LR: never above it, never rising after the warm-up
    assert all(b <= 1e-4 + 1e-12 for _, b in lrs)
    assert all(x >= y for (_, x), (_, y) in zip(lrs[10:], lrs[11:]))


def test_onecycle_and_constant_and_plateau_schedules():
    opt = _optimizer(1e-3)
    lrs = [a for a, in _lrs(build_schedule(opt, TrainConfig(schedule="onecycle"), 2, 20), opt, 40)]
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(1e-3, rel=5e-3) and 8 <= peak <= 11  # a quarter of the way
    assert lrs[0] < 1e-4 and lrs[-1] < lrs[peak] / 50
    opt = _optimizer(1e-3)
    lrs = [a for a, in _lrs(build_schedule(opt, TrainConfig(schedule="constant", warmup_epochs=0.5), 2, 10), opt, 20)]
    assert lrs[0] == pytest.approx(2e-4) and lrs[5:] == [pytest.approx(1e-3)] * 15
    opt = _optimizer(1e-3)
    sched = build_schedule(opt, TrainConfig(schedule="plateau", plateau_patience=1, plateau_factor=0.5), 5, 10)
    _lrs(sched, opt, 10)
    assert opt.param_groups[0]["lr"] == 1e-3  # per-step calls don't move it
    for loss in (1.0, 1.0, 1.0):
        sched.after_epoch(loss)
    assert opt.param_groups[0]["lr"] == 5e-4


def test_schedule_state_round_trips_through_a_weights_only_file(tmp_path):
    opt = _optimizer(1e-3, 1e-4)
    cfg = TrainConfig(schedule="cosine", warmup_epochs=0.5)
    sched = build_schedule(opt, cfg, 3, 10)
    _lrs(sched, opt, 12)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    expected = _lrs(sched, opt, 5)
    opt2 = _optimizer(1e-3, 1e-4)
    again = build_schedule(opt2, cfg, 3, 10)
    again.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert _lrs(again, opt2, 5) == expected


def rows(*val_losses):
    return [{"epoch": i, "stage": 0, "val_loss": v} for i, v in enumerate(val_losses, 1)]


def test_two_stage_leaves_the_head_warm_up_when_val_loss_stops_improving():
    cfg = TrainConfig(strategy="two_stage", head_epochs=5, head_patience=1)
    assert n_stages(cfg) == 2
    assert stage_for_epoch(cfg, 1) == 0
    assert stage_for_epoch(cfg, 3, rows(1.0, 0.8)) == 0  # still improving
    assert stage_for_epoch(cfg, 4, rows(1.0, 0.8, 0.85)) == 1  # epoch 3 brought no lower loss
    assert stage_for_epoch(cfg, 6, rows(1.0, 0.9, 0.8, 0.7, 0.6)) == 1  # at most head_epochs
    # once switched it stays: later rows are stage 1
    later = rows(1.0, 0.8, 0.85) + [{"epoch": 4, "stage": 1, "val_loss": 0.9}]
    assert stage_for_epoch(cfg, 5, later) == 1
    assert warmup_over([{"val_loss": v} for v in (1.0, 0.9, 0.95, 0.97)], 9, 2)
    assert not warmup_over([{"val_loss": v} for v in (1.0, 0.9, 0.95)], 9, 2)
    # the plans: stage 0 the head alone at head_lr; stage 1 everything, LR decaying per group from the head
    warm, fine = plan(cfg, 4, 0), plan(cfg, 4, 1)
    assert warm.n_trainable == 0 and warm.head_lr == 1e-3
    assert fine.n_trainable == 4 and fine.head_lr == 3e-4
    assert fine.group_lrs == pytest.approx([3e-4 * 0.9 ** 4, 3e-4 * 0.9 ** 3, 3e-4 * 0.9 ** 2, 3e-4 * 0.9])
    # what a schedule spans: the warm-up its maximum, the last stage the epochs left
    assert stage_span(replace_epochs(cfg, 12), 0, 1) == 5 and stage_span(replace_epochs(cfg, 12), 1, 4) == 9


def replace_epochs(cfg, epochs):
    from dataclasses import replace

    return replace(cfg, epochs=epochs)


def test_head_warm_up_before_any_strategy_shifts_its_stages():
    cfg = TrainConfig(strategy="gradual", head_epochs=2, gradual_stages=2, gradual_stage_epochs=2)
    assert n_stages(cfg) == 4
    r = rows(1.0, 0.9)
    assert stage_for_epoch(cfg, 3, r) == 1  # gradual's own stage 0 (head only, its own LR)
    r += [{"epoch": 3, "stage": 1, "val_loss": 0.8}, {"epoch": 4, "stage": 1, "val_loss": 0.7}]
    assert stage_for_epoch(cfg, 5, r) == 2
    assert plan(cfg, 6, 2).n_trainable == 3
    # the seed's strategies have no warm-up unless asked for
    assert n_stages(TrainConfig(strategy="partial")) == 1
    assert n_stages(TrainConfig(strategy="partial", head_epochs=3)) == 2


def test_mixup_turns_labels_into_soft_targets_and_mixes_images():
    torch.manual_seed(0)
    np.random.seed(0)
    policy = AugmentPolicy(DataConfig(), TrainConfig(mixup=0.4, label_smoothing=0.0), 3, torch.device("cpu"))
    assert policy.changes_inputs and policy.soft_targets
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 2, 2).clone()
    y = torch.tensor([0, 1, 2, 0])
    mixed, target = policy.mix(x.clone(), y)
    assert target.shape == (4, 3) and torch.allclose(target.sum(1), torch.ones(4))
    lam = target[1, 1].item()  # batch mode: image i is lam * x_i + (1 - lam) * x_(n-1-i); y1 = 1, y2 = 2
    assert 0.0 < lam < 1.0 and target[1, 2].item() == pytest.approx(1 - lam)
    assert torch.allclose(mixed[1, 0, 0, 0], lam * x[1, 0, 0, 0] + (1 - lam) * x[2, 0, 0, 0])
    assert not torch.equal(target, torch.nn.functional.one_hot(y, 3).float())
    # an odd batch can't be paired: images as given, one-hot targets
    odd_x, odd_t = policy.mix(x[:3].clone(), y[:3])
    assert torch.equal(odd_x, x[:3]) and torch.equal(odd_t, torch.nn.functional.one_hot(y[:3], 3).float())
    # the soft loss equals the hard one on one-hot targets; class weights weigh each image by its class
    logits = torch.randn(3, 3)
    hard = torch.nn.functional.cross_entropy(logits, y[:3])
    assert soft_cross_entropy(logits, odd_t).item() == pytest.approx(hard.item(), rel=1e-6)
    w = torch.tensor([2.0, 1.0, 0.5])
    weighted = torch.nn.functional.cross_entropy(logits, y[:3], weight=w)
    assert soft_cross_entropy(logits, odd_t, w).item() == pytest.approx(weighted.item(), rel=1e-6)


def test_train_accuracy_under_mixup_scores_each_mixed_image_against_its_dominant_class(tmp_path, monkeypatch):
    # scored against the unmixed labels, an image that is mostly its partner counts as wrong when the net is
    # right: Mixup runs then showed train accuracy 0.61-0.71 against 0.98 validation (issue 10)
    from engine.trainer import Trainer

    seen = []
    step = Trainer.train_step

    def recording(self, x, y):
        logits, loss, truth = step(self, x, y)
        seen.append((logits.argmax(1), truth, y))  # one epoch, no warm-up: every step is epoch 1's
        return logits, loss, truth

    monkeypatch.setattr(Trainer, "train_step", recording)
    rdir = make_run(tmp_path, strategy="full", epochs=1, lr=3e-3, mixup=0.4, label_smoothing=0.1)
    assert worker_main([str(rdir)]) == 0
    pred, truth, y = (torch.cat(t) for t in zip(*seen))
    assert not torch.equal(truth, y)  # some images were mostly their partner
    assert metrics_of(rdir).train_acc[0] == pytest.approx((pred == truth).float().mean().item(), abs=1e-6)


def test_drop_path_run_skips_blocks_in_training_and_its_checkpoint_loads_without_it(tmp_path, monkeypatch):
    from timm.layers import DropPath

    from engine.checkpoint import load_classifier
    from engine.trainer import Trainer
    from tests.trainer_fixtures import set_config

    seen = []
    step = Trainer.train_step

    def recording(self, x, y):
        seen.append([d.training for d in self.model.modules() if isinstance(d, DropPath)])
        return step(self, x, y)

    monkeypatch.setattr(Trainer, "train_step", recording)
    rdir = make_run(tmp_path, backbone="test_resnet", strategy="full", epochs=1, lr=3e-3)
    set_config(rdir, "model", drop_path=0.2)
    assert worker_main([str(rdir)]) == 0
    assert seen and all(flags and all(flags) for flags in seen)  # config -> model -> training mode
    model, _ = load_classifier(rdir / "best.safetensors")  # rebuilt without it: the same net in eval
    assert not any(isinstance(d, DropPath) for d in model.modules())
    assert metrics_of(rdir).val_acc.notna().all()


def test_augmentation_policies_change_training_batches_only():
    from engine.transforms import prepare_batch

    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 1, 12, 12), dtype=torch.uint8)
    plain = prepare_batch(x, 16, [0.5] * 3, [0.25] * 3)
    for data in (DataConfig(auto_augment="trivialaugment"), DataConfig(auto_augment="randaugment"),
                 DataConfig(random_erasing=1.0)):
        policy = AugmentPolicy(data, TrainConfig(), 3, torch.device("cpu"))
        assert policy.changes_inputs and not policy.soft_targets
        out = prepare_batch(x, 16, [0.5] * 3, [0.25] * 3, torch.Generator().manual_seed(0), policy)
        assert out.shape == plain.shape and out.dtype == torch.float32
        changed = (out - plain).abs().flatten(1).amax(1) > 1e-6
        assert changed.sum() >= 8, data  # most images changed
    assert not AugmentPolicy(DataConfig(), TrainConfig(), 3, torch.device("cpu")).changes_inputs


def test_flip_off_keeps_every_image_facing_its_way_while_crop_and_jitter_still_apply():
    from engine.transforms import augment

    # an image that is bright on its left half only: a mirrored copy is bright on the right
    x = torch.zeros(64, 3, 16, 16)
    x[..., :8] = 0.8
    flipped = augment(x.clone(), torch.Generator().manual_seed(0), jitter=0.0)
    kept = augment(x.clone(), torch.Generator().manual_seed(0), jitter=0.0, flip=False)

    def right_heavy(b):
        return b[..., 8:].mean(dim=(1, 2, 3)) > b[..., :8].mean(dim=(1, 2, 3))

    assert 16 <= right_heavy(flipped).sum() <= 48  # about half mirrored
    assert right_heavy(kept).sum() == 0
    assert not torch.equal(kept, x)  # the crop still shifts them
    policy = AugmentPolicy(DataConfig(augment=True, flip=False), TrainConfig(), 3, torch.device("cpu"))
    out = policy.on_float(x.clone(), torch.Generator().manual_seed(1))
    assert policy.changes_inputs and right_heavy(out).sum() == 0
    assert RunConfig.from_dict({"data": {"augment": True, "flip": False}}).data.flip is False


def test_range_test_finds_the_valley_of_a_known_curve():
    # a loss that falls steadily from 1e-5 to 1e-2 and blows up past 1e-1
    def loss_at(lr):
        x = math.log10(lr)
        return 2.0 if x < -5 else (2.0 - 0.5 * (x + 5) if x < -2 else 0.5 + 30 * max(0.0, x + 2) ** 2)

    curve = range_test(loss_at, steps=100)
    assert curve.stopped_early and curve.lrs[-1] < 10.0
    assert curve.lrs[0] == pytest.approx(1e-7) and curve.lrs[1] == pytest.approx(lr_at(1, 100))
    assert 1e-5 < curve.suggestion < curve.min_loss_lr < 1e-1
    assert 1e-4 < curve.suggestion < 3e-3  # inside the falling stretch, well before the bottom
    assert valley([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0]) == 1e-3  # too short to judge: the first point


def test_frozen_bn_keeps_pretrained_statistics_and_train_updates_them():
    from engine.models import build_classifier
    from engine.strategies import apply_plan, layer_groups, set_train_mode

    m = build_classifier("test_efficientnet", "linear", 3)
    apply_plan(m, layer_groups(m.backbone), plan(TrainConfig(strategy="full"), len(layer_groups(m.backbone))))
    bns = [b for b in m.backbone.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    before = [b.running_var.clone() for b in bns]
    set_train_mode(m, "frozen")
    assert not any(b.training for b in bns) and m.head.training
    m(torch.randn(4, 3, 32, 32))
    assert all(torch.equal(b.running_var, v) for b, v in zip(bns, before))
    set_train_mode(m, "train")
    m(torch.randn(4, 3, 32, 32))
    assert all(b.training for b in bns) and not torch.equal(bns[0].running_var, before[0])


# --- through the worker: digits, a tiny timm model -------------------------------------------------------


def test_two_stage_run_warms_the_head_then_trains_everything(tmp_path):
    import resource

    rdir = make_run(tmp_path, "two", strategy="two_stage", epochs=5, head_epochs=3, head_patience=1, lr=3e-3,
                    schedule="cosine", warmup_epochs=0.5)
    before = resource.getrusage(resource.RUSAGE_SELF)
    assert worker_main([str(rdir)]) == 0
    after = resource.getrusage(resource.RUSAGE_SELF)
    # the worker ran in this process: its CPU seconds are this process's, read as the run finished
    cpu = json.loads((rdir / "results.json").read_text())["cpu_seconds"]
    assert before.ru_utime + before.ru_stime - 1e-3 <= cpu <= after.ru_utime + after.ru_stime + 1e-3
    m = metrics_of(rdir)
    stages = m["stage"].tolist()
    head = stages.count(0)
    assert 1 <= head <= 3 and stages == [0] * head + [1] * (5 - head)
    total = m["trainable"].max()
    assert m[m.stage == 0]["trainable"].max() < total / 10  # the head alone
    assert m["lr"].iloc[0] < 1e-3  # the cosine's first epoch ends below head_lr
    log = [e.message for e in of_type(rdir, "log")]
    assert any(msg.startswith("stage 1: ") for msg in log)


def test_ema_is_what_gets_evaluated_and_kept(tmp_path):
    from safetensors.torch import load_file

    rdir = make_run(tmp_path, "ema", strategy="full", epochs=2, lr=3e-3, ema=True, ema_decay=0.9, patience=5)
    assert worker_main([str(rdir)]) == 0
    point = resume_point(rdir)
    ema, raw = point["extra"]["ema"]["weights"], point["model"]
    assert point["extra"]["ema"]["updates"] == 2 * math.ceil(len_train(rdir) / 64)
    key = next(k for k in raw if k.endswith("conv_stem.weight"))
    assert not torch.allclose(ema[key], raw[key])  # the average lags the raw weights
    if metrics_of(rdir)["is_best"].tolist()[-1]:
        best = load_file(rdir / "best.safetensors")
        assert torch.equal(best[key], ema[key]) and not torch.equal(best[key], raw[key])
    assert not [e for e in of_type(rdir, "log") if e.message.startswith("EMA")]  # 0.9 is reached in 42 steps


def test_an_ema_decay_the_warm_up_never_reaches_is_said_in_the_runs_log():
    # the preset's run: 8 epochs of 141 steps end at 0.9908, where train.ema_decay says 0.998 (it takes 11,181)
    import torch

    from engine.ema import WeightAverage

    ema = WeightAverage(torch.nn.Linear(2, 2), 0.998)
    assert ema.short_of_decay(1128) == ("EMA: the decay warms up to 0.9908 by the last of about 1128 steps; "
                                        "train.ema_decay 0.998 would take 11,181 steps (an average of about the "
                                        "last 108 steps)")
    assert ema.ema.get_decay(11181) >= 0.998 > ema.ema.get_decay(11180)  # the count it names
    assert ema.short_of_decay(11181) == ""


def len_train(rdir):
    started = of_type(rdir, "started")[0]
    return started.data["train"]


def test_lr_find_chooses_the_lr_stores_its_curve_and_trains_at_it(tmp_path):
    rdir = make_run(tmp_path, "find", strategy="frozen", epochs=2, lr="find", lr_find_steps=30, schedule="constant")
    assert worker_main([str(rdir)]) == 0
    curve = json.loads((rdir / "lr_find.json").read_text())
    assert len(curve["lrs"]) == len(curve["losses"]) >= 10 and curve["stage"] == 0
    found = of_type(rdir, "lr_find")
    assert len(found) == 1 and found[0].lr == curve["suggestion"]
    assert metrics_of(rdir)["lr"].tolist() == pytest.approx([curve["suggestion"]] * 2)
    assert resume_point(rdir)["extra"]["found_lr"] == curve["suggestion"]
    # the range test leaves no trace: the run trains as one at that fixed LR does
    fixed = make_run(tmp_path, "fixed", strategy="frozen", epochs=2, lr=curve["suggestion"], schedule="constant")
    assert worker_main([str(fixed)]) == 0
    np.testing.assert_allclose(metrics_of(rdir)["val_loss"], metrics_of(fixed)["val_loss"], rtol=0, atol=1e-6)


def test_full_on_grey_data_leaves_no_live_zero_variance_channel_and_onnx_parity_holds(tmp_path):
    """Pretrained nets carry dead channels (Lite0: 130 with running variance 0); fine-tuning must not wake them."""
    from safetensors.torch import load_file

    from engine.bn import live_zero_var_channels
    from engine.models import build_classifier
    from export.api import export_run

    torch.manual_seed(0)
    backbone = build_classifier("test_efficientnet", "linear", 3).backbone
    state = backbone.state_dict()
    # kill channels the way ImageNet training left Lite0's: variance 0, conv weights about 1e-7
    for conv, bn in (("conv_stem", "bn1"), ("blocks.3.0.conv_pw", "blocks.3.0.bn1")):
        state[f"{conv}.weight"][:3] = 1e-7 * torch.randn_like(state[f"{conv}.weight"][:3])
        state[f"{bn}.running_var"][:3] = 0.0
    weights = tmp_path / "pretrained.pth"
    torch.save(state, weights)
    assert live_zero_var_channels(state) == 6
    runs = {}
    for bn in ("train", "frozen"):
        rdir = runs[bn] = make_run(tmp_path, f"bn-{bn}", strategy="full", epochs=2, lr=3e-3, bn=bn)
        from tests.trainer_fixtures import set_config

        set_config(rdir, "model", weights=str(weights))
        assert worker_main([str(rdir)]) == 0  # digits: grey images fed as RGB
        best = load_file(rdir / "best.safetensors")
        assert live_zero_var_channels(best) == 0, bn
        # the retired channels are constants: no scale, no weights feeding them
        assert torch.equal(best["backbone.bn1.weight"][:3], torch.zeros(3))
        assert torch.equal(best["backbone.conv_stem.weight"][:3], torch.zeros_like(best["backbone.conv_stem.weight"][:3]))
    # frozen keeps every statistic as it was loaded (the retired channels' at 1)
    frozen = load_file(runs["frozen"] / "best.safetensors")
    assert int((frozen["backbone.bn1.running_var"] <= 1e-8).sum()) == 0
    assert torch.equal(frozen["backbone.bn2.running_var"], state["bn2.running_var"])
    summary = export_run(runs["train"], benchmark=False)
    assert summary["status"] == "ok", summary["error"]
    assert summary["parity_max_abs_diff"] < 1e-4 and summary["top1_agreement"] == 1.0


def test_clip_grad_bounds_the_global_gradient_norm_of_the_step():
    from engine.precision import Amp, for_device

    cpu = torch.device("cpu")
    amp = Amp(for_device(cpu, False), cpu)
    for clip, expected in ((0.0, 50.0), (1.0, 1.0)):
        w = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([w], lr=1.0)
        loss = (w * torch.tensor([30.0, 40.0])).sum()  # gradient (30, 40): norm 50
        amp.backward_step(loss, opt, clip)
        # SGD at lr 1 moves the weights by the (clipped) gradient: its norm is the step's length
        assert torch.linalg.vector_norm(w.detach()).item() == pytest.approx(expected, rel=1e-5)
        assert (w.detach() / -torch.linalg.vector_norm(w.detach())).tolist() == pytest.approx([0.6, 0.8])


def test_tta_averages_the_probabilities_of_the_image_and_its_mirror():
    from engine.augment import tta_logits

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4, 3))  # not mirror-symmetric
    x = torch.randn(5, 1, 2, 4)
    mean = (torch.softmax(net(x), 1) + torch.softmax(net(x.flip(-1)), 1)) / 2
    probs = torch.softmax(tta_logits(net, x), 1)
    assert torch.allclose(probs, mean, atol=1e-6)
    assert not torch.allclose(probs, torch.softmax(net(x), 1), atol=1e-3)  # the mirror image counted


def test_a_cosine_schedule_ends_on_the_last_step_when_a_last_batch_of_one_is_left_out(tmp_path):
    # 129 training images at batch 64: two steps an epoch (the 129th would be a batch of one), not three
    rdir = make_run(tmp_path, "odd", data={"train_limit": 129}, strategy="full", epochs=2, schedule="cosine",
                    warmup_epochs=0, lr=1e-3, patience=5)
    assert worker_main([str(rdir)]) == 0
    assert len_train(rdir) == 129
    schedule = resume_point(rdir)["scheduler"]
    assert schedule["updates"] == 4
    assert schedule["impl"]["t_initial"] == 4  # the cosine reaches its floor on the last step taken
