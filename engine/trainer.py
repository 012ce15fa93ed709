"""One run: data and model on the device, the strategy's stages, early stopping, test metrics.

Everything a reader needs leaves through the RunWriter (events + summary) and
files in the run folder; nothing else is shared with the parent process.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from engine import events as ev
from engine import lr_find
from engine import resume as resume_point
from engine.augment import AugmentPolicy, soft_cross_entropy, tta_logits
from engine.bn import retire_dead_channels
from engine.checkpoint import save_checkpoint
from engine.config import RunConfig
from engine.cpu_claims import Follower
from engine.data.load import OpenDataset, open_dataset
from engine.data.stream import Feed, feeds
from engine.device import device_label, device_name, resolve_device
from engine.ema import WeightAverage
from engine.errors import UserError
from engine.feature_cache import SplitModel, forward_units, run_prefix, split_point
from engine.metrics import test_results
from engine.model_meta import ModelMeta
from engine.models import Classifier, build_classifier, norm_config
from engine.precision import Amp, for_device
from engine.resume import LoopState, capture_rng, restore_rng
from engine.schedules import build_schedule
from engine.speed import channels_last, eval_batch
from engine.store import RunDir, RunWriter, dataset_cache_for
from engine.store.heartbeat import local_host
from engine.strategies import (
    apply_plan,
    is_warmup,
    layer_groups,
    n_stages,
    plan,
    set_train_mode,
    stage_for_epoch,
    stage_span,
)
from engine.timing import PhaseTimes
from engine.transforms import prepare_batch
from engine.weights import load_backbone_weights

log = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = {"cpu": 3 << 30, "cuda": 8 << 30}


class Cancel(Exception):
    """A cancel request (cancel file, SIGTERM, Ctrl-C) reached the training loop."""


class Diverged(UserError):
    """The training or validation loss stopped being a finite number."""


def diverged_message(what: str, value: float, epoch: int) -> str:
    """"loss became NaN at epoch N (try a lower train.lr); ..." and which checkpoint is left."""
    became = "NaN" if math.isnan(value) else "infinite"
    kept = ("no checkpoint was saved (it happened in the first epoch)" if epoch == 1
            else f"the checkpoint after epoch {epoch - 1} is kept")
    return f"{what} became {became} at epoch {epoch} (try a lower train.lr); {kept}"


def train_rows(n: int, batch_size: int) -> int:
    """Rows of a shuffled training epoch: all of them, less the one that would be a last batch on its own
    (BatchNorm in training mode refuses a batch of one)."""
    return n - 1 if n > batch_size and n % batch_size == 1 else n


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: RunDir | Path, writer: RunWriter, device: str | None = None):
        self.cfg, self.writer = cfg, writer
        self.dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.device = resolve_device(device or cfg.train.device)
        # a grid sharing the cores rebalances them as other grids' runs come and go (engine.cpu_claims)
        self.follower = Follower.from_env() if self.device.type == "cpu" else None
        self.cuda = self.device.type == "cuda"
        self.times = PhaseTimes()  # from the process start: what "done in Ns" reports
        self.precision = for_device(self.device, cfg.train.amp)
        self.amp = Amp(self.precision, self.device)
        self.amp_dtype = self.precision.dtype
        self.channels_last = channels_last(self.device.type, cfg.train.channels_last)
        self.eval_batch = eval_batch(self.device.type, cfg.data.batch_size)
        self._last_cancel_check = 0.0

    # --- set-up -------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.train.seed)
        with self.times.phase("data"):
            self._open_data()
        weight = None
        if cfg.train.class_weighting:
            counts = torch.bincount(self.data["train"].y, minlength=len(self.splits.classes)).float()
            weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(self.device)
        self.loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.train.label_smoothing)
        self.class_weight = weight
        self.policy = AugmentPolicy(cfg.data, cfg.train, len(self.splits.classes), self.device)
        self.found_lr: float | None = None  # train.lr = "find": the range test's choice (in the resume point)
        self._rng_at_build = torch.get_rng_state()  # the random init draws from here
        with self.times.phase("model"):
            self._build_model()
        self._rng_fresh = capture_rng(self.cuda)  # where a fresh run's training starts from
        self.optimizer = self.scheduler = None
        self._refused = ""

    def _open_data(self) -> None:
        """The dataset from the cache (decoded there once, by whichever run came first) and its splits on the
        device: held whole while they fit the device budget, streamed batch by batch otherwise."""
        dc = self.cfg.data
        cache = dataset_cache_for(self.dir, dc.cache_dir) if dc.cache else None
        self.splits: OpenDataset = open_dataset(
            dc.dataset, dc.data_root, val_fraction=dc.val_fraction, seed=self.cfg.train.seed, download=dc.download,
            image_size=dc.image_size, train_limit=dc.train_limit, on_bad_image=dc.on_bad_image, cache=cache,
            progress=lambda done, total: self._data_progress("decode", done, total),
            waiting=lambda done, total: self._data_progress("decode-wait", done, total),
        )
        if self.splits.skipped:
            self.dir.write_skipped(self.splits.skipped)
        self.data: dict[str, Feed]
        self.data, self.feed_plan = feeds(self.splits.arrays, self.splits.selection.splits(), self.device,
                                          dc.device_budget_mb, dc.stream)
        log.info("data: %s (cache %s); %s", self.splits.source, self.splits.arrays.notes.get("cache", "?"),
                 self.feed_plan.describe())

    def _data_progress(self, phase: str, done: int, total: int) -> None:
        self.writer.progress(ev.Progress(epoch=0, epochs=self.cfg.train.epochs, phase=phase, step=min(done, total),
                                         steps=total), force=bool(total) and done >= total)
        self._check_cancel()

    def _build_model(self) -> None:
        cfg = self.cfg
        self.model: Classifier = build_classifier(cfg.model.backbone, cfg.model.head, len(self.splits.classes),
                                                  cfg.model.drop_path)
        self.weights = load_backbone_weights(
            self.model.backbone, cfg.model.backbone, cfg.model.weights, cfg.model.on_missing_weights
        )
        self.norm = norm_config(self.model.backbone)
        self.retired = retire_dead_channels(self.model.backbone) if self.weights.get("pretrained") else 0
        # frozen BatchNorm keeps pretrained statistics; a randomly initialised net has none worth keeping
        self.bn_mode = cfg.train.bn if self.weights.get("pretrained") else "train"
        if self.retired:
            log.info("retired %d dead BatchNorm channels of the pretrained backbone (running variance 0)",
                     self.retired)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.groups = layer_groups(self.model.backbone)
        self.ema = WeightAverage(self.model, cfg.train.ema_decay) if cfg.train.ema else None
        self.units = None
        if cfg.train.cache_features and not self.policy.changes_inputs:
            sample = self._prep(self.data["train"].head(2))
            self.units = forward_units(self.model.backbone, sample)
            if self.units is None:
                log.info("%s: forward_features is not a plain chain; no activation cache", cfg.model.backbone)

    def _rebuild_model(self) -> None:
        """The model exactly as setup built it, and every RNG where a fresh run starts: after a refused resume."""
        torch.set_rng_state(self._rng_at_build)
        self._build_model()
        restore_rng(self._rng_fresh, self.cuda)
        self.optimizer = self.scheduler = None

    def _prep(self, xb: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        policy = self.policy if gen is not None else None  # a generator is given for training batches only
        x = prepare_batch(xb, self.cfg.data.image_size, self.norm["mean"], self.norm["std"], gen, policy)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        return self.amp.autocast()

    # --- stages: trainable set, optimizer, activation cache ------------------

    def plan_config(self):
        """The train config plans are built from: ``lr`` is the range test's choice when it was ``"find"``."""
        tc = self.cfg.train
        if isinstance(tc.lr, str):
            return replace(tc, lr=self.found_lr if self.found_lr is not None else 1.0)
        return tc

    def _optimizer(self, param_groups: list[dict]) -> torch.optim.Optimizer:
        tc = self.cfg.train
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[tc.optimizer]
        kwargs = {"weight_decay": tc.weight_decay}
        if tc.optimizer == "sgd":
            kwargs["momentum"] = 0.9
        return opt_cls(param_groups, **kwargs)

    def enter_stage(self, stage: int, build_cache: bool = True, first_epoch: int = 1) -> None:
        """The stage's trainable set and a new optimizer and LR schedule; then its activation cache.

        With ``train.lr = "find"``, the first stage that trains at the strategy's LR runs the range test first
        (on the stage's own trainable set and inputs), unless the resume point already holds its result.
        """
        tc = self.cfg.train
        self.stage = stage
        self._build_optimizer(stage, first_epoch)  # sets the trainable set, which the cache depends on
        if build_cache:
            self._build_cache()
        else:
            self.cache, self.net = None, self.model
        if isinstance(tc.lr, str) and self.found_lr is None and not is_warmup(tc, stage):
            self.found_lr = self.find_lr(stage)
            self._build_optimizer(stage, first_epoch)

    def _build_optimizer(self, stage: int, first_epoch: int) -> None:
        tc = self.cfg.train
        self.plan = plan(self.plan_config(), len(self.groups), stage)
        self.optimizer = self._optimizer(apply_plan(self.model, self.groups, self.plan))
        self.scheduler = build_schedule(self.optimizer, tc, stage_span(tc, stage, first_epoch), self.steps_per_epoch())
        self.trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def find_lr(self, stage: int) -> float:
        """The LR range test on ``stage``'s trainable set and inputs; writes lr_find.json, emits ``lr_find``.

        The weights, BatchNorm statistics, EMA and every RNG are put back afterwards, so training goes on
        exactly as if the test had not run (a resumed run, which skips it, trains the same).
        """
        tc = self.cfg.train
        weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        ema = self.ema.state_dict() if self.ema is not None else None
        rng = capture_rng(self.cuda, self._generators())
        unit = plan(replace(tc, lr=1.0), len(self.groups), stage)  # LRs relative to the strategy's LR
        self.optimizer = self._optimizer(apply_plan(self.model, self.groups, unit))
        ratios = [g["lr"] for g in self.optimizer.param_groups]
        self.scheduler = _Fixed()
        set_train_mode(self.model, self.bn_mode)
        y_all = self.data["train"].y
        bs = self.cfg.data.batch_size

        def batches():
            while True:
                yield from self._batches("train", bs, self.gen, images=not self._cached("train"))

        order = batches()
        done = [0]

        def step(lr: float) -> float:
            for group, ratio in zip(self.optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            idx, xb = next(order)
            _, loss, _ = self.train_step(self._inputs("train", idx, xb, self.aug_gen), y_all[idx.to(self.device)])
            done[0] += 1
            self._progress("lr_find", done[0], tc.lr_find_steps, loss.item(), None)
            self._check_cancel()
            return loss.item()

        try:
            curve = lr_find.range_test(step, steps=tc.lr_find_steps, stage=stage)
        finally:
            self.model.load_state_dict(weights)
            if ema is not None:
                self.ema.load_state_dict(ema)
            restore_rng(rng, self.cuda, self._generators())
        self.dir.write_lr_find(curve.to_dict())
        self.writer.emit(ev.LrFound(stage=stage, lr=curve.suggestion, min_loss_lr=curve.min_loss_lr,
                                    steps=len(curve.lrs), method=curve.method))
        log.info("LR range test (stage %d): %.3g (lowest loss at %.3g)", stage, curve.suggestion, curve.min_loss_lr)
        return curve.suggestion

    def _build_cache(self) -> None:
        """Cache the frozen prefix's output for train and val, if it is worth it and fits."""
        with self.times.phase("features"):
            self._fill_cache()

    def _fill_cache(self) -> None:
        self.cache: dict[str, torch.Tensor] | None = None
        self.net: nn.Module = self.model
        if self.units is None:
            return
        k = split_point(self.units)
        if k == 0:
            return
        n = len(self.data["train"]) + len(self.data["val"])
        probe = run_prefix(self.model.eval(), self.units, k, self._prep(self.data["train"].head(1)))
        need = probe.numel() * probe.element_size() * n
        limit = CACHE_LIMIT_BYTES["cuda" if self.cuda else "cpu"]
        if need > limit:
            log.info("activation cache would need %.1f GB (limit %.1f); running the full network", need / 1e9, limit / 1e9)
            return
        self.cache = {}
        bs = self.eval_batch
        for split in ("train", "val"):
            total = len(self.data[split])
            out = None
            for idx, xb in self.data[split].batches(torch.arange(total), bs):
                with self._autocast():
                    part = run_prefix(self.model, self.units, k, self._prep(xb)).float()
                if out is None:  # one buffer for the split: no list of pieces and concatenated copy
                    out = torch.empty((total, *part.shape[1:]), dtype=part.dtype, device=part.device)
                start = int(idx[0])
                out[start: start + len(idx)] = part
                self._progress("features", start + len(idx), total, None, None)
                self._check_cancel()
                self._follow_threads()
            self.cache[split] = out if out is not None else probe.new_empty((0, *probe.shape[1:])).float()
        self.net = SplitModel(self.model, self.units[k:])
        log.info("cached %d of %d backbone units (%.1f MB)", k, len(self.units), need / 1e6)

    # --- loops ----------------------------------------------------------------

    def _batches(self, split: str, bs: int, gen: torch.Generator | None, images: bool = True):
        """(index, uint8 images on the device) per batch, shuffled by ``gen`` (in order without it); images
        None where the activation cache stands in for them (``images=False``)."""
        n = len(self.data[split])
        order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
        if gen is not None:  # training: BatchNorm can't take a batch of one image
            order = order[:train_rows(n, bs)]
        for batch in (((idx, None) for idx in order.split(bs)) if not images else self.data[split].batches(order, bs)):
            self._follow_threads()
            yield batch

    def _follow_threads(self) -> None:
        """Take up the CPU threads the orchestrator gives the run now (other grids' runs came or went)."""
        threads = self.follower.check() if self.follower is not None else None
        if threads is not None:
            torch.set_num_threads(threads)  # between batches, on the thread that computes: where it acts
            self.writer.emit(ev.Log(message=f"{threads} CPU thread(s) from here on: other grids' runs on this host "
                                            "started or ended"))

    def _cached(self, split: str) -> bool:
        return self.cache is not None and split in self.cache

    def _inputs(self, split: str, idx: torch.Tensor, xb: torch.Tensor | None, gen: torch.Generator | None) -> torch.Tensor:
        if xb is None:
            return self.cache[split][idx.to(self.cache[split].device)]
        return self._prep(xb, gen)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch (Mixup/CutMix, loss, clipping, step, EMA, schedule).

        (logits, loss, truth): ``truth`` is what train accuracy scores against, each mixed image's dominant class.
        """
        tc = self.cfg.train
        target, truth = None, y
        if self.policy.soft_targets:
            x, target = self.policy.mix(x, y)
            truth = target.argmax(1)
        with self._autocast():
            logits = self.net(x)
            if target is None:
                loss = self.loss_fn(logits.float(), y)
            else:
                loss = soft_cross_entropy(logits.float(), target, self.class_weight)
        self.optimizer.zero_grad(set_to_none=True)
        self.amp.backward_step(loss, self.optimizer, tc.clip_grad)  # a GradScaler for fp16 (engine.precision)
        if self.ema is not None:
            self.ema.update(self.model)
        self.scheduler.after_step()
        return logits, loss, truth

    def steps_per_epoch(self) -> int:
        """Optimizer steps of a training epoch (``train_rows``: no last batch of one)."""
        bs = self.cfg.data.batch_size
        return math.ceil(train_rows(len(self.data["train"].y), bs) / bs)

    def train_epoch(self, epoch: int, gen: torch.Generator, aug_gen: torch.Generator | None) -> tuple[float, float, float]:
        set_train_mode(self.model, self.bn_mode)  # the cached-tail net shares these modules
        y_all = self.data["train"].y
        bs = self.cfg.data.batch_size
        steps = self.steps_per_epoch()
        total_loss = correct = seen = 0
        t0 = time.perf_counter()
        for step, (idx, xb) in enumerate(self._batches("train", bs, gen, images=not self._cached("train")), 1):
            x = self._inputs("train", idx, xb, aug_gen)
            y = y_all[idx.to(self.device)]
            logits, loss, truth = self.train_step(x, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):  # events and metrics can't hold it, and nothing good follows
                raise Diverged(diverged_message("loss", loss_value, epoch))
            total_loss += loss_value * len(y)
            correct += (logits.argmax(1) == truth).sum().item()
            seen += len(y)
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            self._progress("train", step, steps, total_loss / seen, rate, epoch)
            self._check_cancel()
        return total_loss / seen, correct / seen, seen / max(time.perf_counter() - t0, 1e-9)

    @torch.no_grad()
    def evaluate(self, split: str, epoch: int = 0, tta: bool = False) -> tuple[float, float, torch.Tensor]:
        """Loss, accuracy and softmax probabilities over a split (eval mode, no augmentation).

        ``tta``: each image and its mirror image, probabilities averaged (images only, not cached activations).
        """
        use_cache = self._cached(split)
        net = self.net if use_cache else self.model
        self.model.eval()
        net.eval()
        y_all = self.data[split].y
        n = len(y_all)
        bs = self.eval_batch
        steps = math.ceil(n / bs)
        probs, total_loss = [], 0.0
        for step, (idx, xb) in enumerate(self._batches(split, bs, None, images=not use_cache), 1):
            x = self._inputs(split, idx, xb, None)
            with self._autocast():
                logits = tta_logits(net, x) if tta and not use_cache else net(x).float()
            total_loss += F.cross_entropy(logits, y_all[idx.to(self.device)], reduction="sum").item()
            probs.append(torch.softmax(logits, 1))
            self._progress(split, step, steps, None, None, epoch)
            self._check_cancel()
        p = torch.cat(probs)
        acc = (p.argmax(1) == y_all).float().mean().item()
        return total_loss / n, acc, p

    def _progress(self, phase, step, steps, loss, rate, epoch: int = 0) -> None:
        self.writer.progress(
            ev.Progress(epoch=epoch, epochs=self.cfg.train.epochs, phase=phase, step=min(step, steps), steps=steps,
                        loss=loss, img_per_s=rate),
            force=step >= steps,
        )

    def _check_cancel(self) -> None:
        now = time.monotonic()
        if now - self._last_cancel_check > 0.5:
            self._last_cancel_check = now
            reason = self.dir.cancel_reason()
            if reason:
                raise Cancel(reason)

    # --- norms, checkpoints, state ---------------------------------------------

    @torch.no_grad()
    def group_norms(self) -> dict[str, float]:
        params = dict(self.model.backbone.named_parameters())
        out = {}
        for name, pnames in self.groups:
            sq = sum(params[p].detach().float().pow(2).sum().item() for p in pnames)
            out[name] = math.sqrt(sq)
        out["head"] = math.sqrt(sum(p.detach().float().pow(2).sum().item() for p in self.model.head.parameters()))
        return out

    def ckpt_meta(self, epoch: int, val_loss: float) -> ModelMeta:
        return ModelMeta(
            backbone=self.cfg.model.backbone, head=self.cfg.model.head, classes=tuple(self.splits.classes),
            image_size=self.cfg.data.image_size, mean=tuple(self.norm["mean"]), std=tuple(self.norm["std"]),
            in_chans_source=self.splits.channels, storage=self.splits.storage,
            run_id=self.cfg.run_id, dataset=self.cfg.data.dataset, epoch=epoch, val_loss=val_loss,
        )  # interpolation, antialias rule, channels: engine.preprocess's (what prepare_batch does)

    def _generators(self) -> dict[str, torch.Generator | None]:
        return {"shuffle": self.gen, "augment": self.aug_gen}

    def commit(self, state: LoopState, improved: bool, events: list[ev.Event]) -> None:
        """The epoch's checkpoint: the resume point in one atomic write, then the files derived from it.

        A kill or a full disk (DiskFull) anywhere in here leaves a set ``try_resume`` can use: the previous
        point, or the new one with best.safetensors and metrics.csv behind, which it rewrites.
        """
        rng = capture_rng(self.cuda, self._generators())
        resume_point.save(self.dir, self.model, self.optimizer, self.scheduler, state, events, rng, self._extra())
        if improved:
            self._save_best(state)
        self.dir.write_metrics(state.rows)
        self.dir.last.unlink(missing_ok=True)  # older versions' resume weights; the point holds them now

    def _extra(self) -> dict:
        """The recipe's state in the resume point: EMA weights, the range test's LR."""
        extra: dict = {}
        if self.ema is not None:
            extra["ema"] = self.ema.state_dict()
        if self.found_lr is not None:
            extra["found_lr"] = float(self.found_lr)
        return extra

    def _restore_extra(self, extra: dict) -> None:
        if self.ema is not None:
            if "ema" not in extra:
                raise ValueError("the point holds no EMA weights but this run averages them (train.ema)")
            self.ema.load_state_dict(extra["ema"])
        if isinstance(self.cfg.train.lr, str) and "found_lr" in extra:
            self.found_lr = float(extra["found_lr"])

    def eval_weights(self):
        """A block in which the model holds the weights that are evaluated and kept: the EMA's when enabled."""
        return self.ema.swapped_in(self.model) if self.ema is not None else nullcontext(self.model)

    def _save_best(self, state: LoopState) -> None:
        with self.eval_weights():
            save_checkpoint(self.model, self.dir.best, self.ckpt_meta(state.epoch, state.best_val_loss))

    def try_resume(self) -> tuple[LoopState, dict | None]:
        """Continue from a verified last_state.pt, or start fresh (``self._refused`` says why one was refused).

        On success the model, optimizer and scheduler hold the point's state (the optimizer of its stage)
        and the files behind it are rewritten. A point that fails once the weights are in rebuilds the
        model, so a fresh start never trains on half-loaded weights.
        """
        self._refused = ""
        try:
            point = resume_point.load(self.dir, self.model.state_dict())
            if point is None:
                return LoopState(), None
            state = resume_point.loop_state(point)
        except resume_point.Refused as exc:
            return self._start_over(str(exc), rebuild=False)
        try:
            self.model.load_state_dict(point["model"])
            self._restore_extra(point.get("extra", {}))
            first = next((r["epoch"] for r in state.rows if r.get("stage") == state.stage), state.epoch)
            self.enter_stage(state.stage, build_cache=False, first_epoch=first)
            self.optimizer.load_state_dict(point["optimizer"])
            self.scheduler.load_state_dict(point["scheduler"])
        except Exception as exc:  # noqa: BLE001 - any misfit means the point isn't this run's
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            return self._start_over(f"{RunDir.STATE} doesn't fit this run ({type(exc).__name__}: {first})",
                                    rebuild=True)
        if resume_point.best_is_behind(self.dir, state):
            self._save_best(state)
        if resume_point.metrics_are_behind(self.dir, state):
            self.dir.write_metrics(state.rows)
        log.info("resuming after epoch %d", state.epoch)
        return state, point

    def _start_over(self, why: str, rebuild: bool) -> tuple[LoopState, None]:
        log.warning("checkpoint refused: %s; restarted from scratch", why)
        self._refused = why
        self.found_lr = None
        if rebuild:
            self._rebuild_model()
        return LoopState(), None

    # --- the run ------------------------------------------------------------

    def prepare_generators(self) -> None:
        """The loop's own RNGs: shuffling, and augmentation (the policy's hooks run on training batches only)."""
        tc = self.cfg.train
        self.gen = torch.Generator().manual_seed(tc.seed)
        self.aug_gen = None
        if self.cfg.data.augment or self.policy.changes_inputs:
            self.aug_gen = torch.Generator(device=self.device).manual_seed(tc.seed)

    def run(self) -> None:
        cfg, tc = self.cfg, self.cfg.train
        self.prepare_generators()
        state, point = self.try_resume()
        init_norms = self.group_norms()
        self.writer.emit(ev.Started(
            run_id=cfg.run_id, pid=os.getpid(), host=local_host(), device=device_label(self.device),
            device_name=device_name(self.device), versions=versions(), config=cfg.to_dict(), weights=self.weights,
            data={"classes": list(self.splits.classes), "train": len(self.data["train"]), "val": len(self.data["val"]),
                  "test": len(self.data["test"]), "image_size": cfg.data.image_size, "source": self.splits.source,
                  "channels_source": self.splits.channels, "skipped": len(self.splits.skipped),
                  "cache": self.splits.arrays.notes.get("cache", ""), "feed": self.feed_plan.describe(),
                  "precision": self.precision.name},
            params={"total": sum(p.numel() for p in self.model.parameters())},
            groups=[g for g, _ in self.groups] + ["head"], initial_norms=init_norms,
            resumed_from_epoch=state.epoch,
        ))
        if self._refused:
            self.writer.emit(ev.Log(level="warning", message=f"checkpoint refused: {self._refused}; "
                                                             "restarted from scratch"))
        if self.ema is not None and point is None:
            note = self.ema.short_of_decay(tc.epochs * self.steps_per_epoch())
            if note:
                self.writer.emit(ev.Log(message=note))
        if point is not None and self.writer.summary.epoch < state.epoch:
            for event in resume_point.replay_events(point):  # saved, but killed before it was announced
                self.writer.emit(event)
        t_start = time.perf_counter()
        features_before = self.times.seconds.get("features", 0.0)
        if not state.early_stopped and state.epoch < tc.epochs:
            self.train(state, point)
        self.times.add("train", time.perf_counter() - t_start
                       - (self.times.seconds.get("features", 0.0) - features_before))
        with self.times.phase("test"):
            test = self.finish(state, state.early_stopped, time.perf_counter() - t_start)
        self.emit_finished(state, test)

    def train(self, state: LoopState, point: dict | None) -> None:
        """Epochs ``state.epoch + 1`` on, each ending in a checkpoint (``commit``) and then its events."""
        tc = self.cfg.train
        if point is None:
            self.enter_stage(stage_for_epoch(tc, 1))
        elif stage_for_epoch(tc, state.epoch + 1, state.rows) == self.stage:
            self._build_cache()  # the stage's optimizer came with the point; otherwise the loop enters the next
        if point is not None:
            skipped = restore_rng(point["rng"], self.cuda, self._generators())
            if skipped:
                self.writer.emit(ev.Log(level="warning", message=f"RNG state of {', '.join(skipped)} can't continue "
                                                                 "on this device; it restarts from its seed"))
        for epoch in range(state.epoch + 1, tc.epochs + 1):
            new_stage = stage_for_epoch(tc, epoch, state.rows)
            if new_stage != self.stage:
                state.bad_epochs = 0
                self.enter_stage(new_stage, first_epoch=epoch)
                self.writer.emit(ev.Log(message=f"stage {new_stage}: {self.plan.n_trainable}/{len(self.groups)} "
                                                f"backbone groups train, head lr {self.plan.head_lr:g}"))
            t0 = time.perf_counter()
            train_loss, train_acc, rate = self.train_epoch(epoch, self.gen, self.aug_gen)
            with self.eval_weights():
                val_loss, val_acc, _ = self.evaluate("val", epoch)
            if not math.isfinite(val_loss):
                raise Diverged(diverged_message("validation loss", val_loss, epoch))
            self.scheduler.after_epoch(val_loss)
            improved = val_loss < state.best_val_loss
            if improved:
                state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
            else:
                state.bad_epochs += 1
            seconds = time.perf_counter() - t0
            norms = self.group_norms()
            lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
            head_lr = lrs.get("head", 0.0)
            state.epoch, state.stage = epoch, self.stage
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                   "val_acc": val_acc, "lr": head_lr, "img_per_s": rate, "seconds": seconds, "stage": self.stage,
                   "trainable": self.trainable, "is_best": improved}
            row.update({f"norm:{k}": v for k, v in norms.items()})
            state.rows = state.rows[: epoch - 1] + [row]
            # gradual: a stalled stage doesn't stop the run before its last stage
            state.early_stopped = state.bad_epochs >= tc.patience and self.stage >= n_stages(tc) - 1
            events: list[ev.Event] = [ev.Epoch(
                epoch=epoch, epochs=tc.epochs, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                val_acc=val_acc, lr=head_lr, lrs={g: lrs.get(g, 0.0) for g, _ in self.groups} | {"head": head_lr},
                img_per_s=rate, seconds=seconds, group_norms=norms, stage=self.stage, trainable=self.trainable,
                is_best=improved,
            )]
            if improved:
                events.append(ev.Checkpoint(kind="best", epoch=epoch, path=self.dir.BEST, val_loss=val_loss))
            if state.early_stopped:
                events.append(ev.EarlyStop(epoch=epoch, best_epoch=state.best_epoch))
            self.commit(state, improved, events)  # before the epoch is announced: an announced epoch is resumable
            for event in events:
                self.writer.emit(event)
            if state.early_stopped:
                break

    def finish(self, state: LoopState, early: bool, seconds: float) -> dict:
        """The best weights on the test split: test_probs.npz written, results returned (emit_finished writes
        them)."""
        from engine.checkpoint import load_state

        best = self.dir.best
        self.model.load_state_dict(load_state(best, str(self.device)))
        self.cache, self.net = None, self.model
        _, _, probs = self.evaluate("test", tta=self.cfg.train.tta)
        probs_np = probs.float().cpu().numpy()
        labels, index = self.splits.test.y, self.splits.test.index
        results = test_results(probs_np, labels, list(self.splits.classes), index)
        train_seconds = sum(r["seconds"] for r in state.rows) if state.rows else seconds
        results.update({
            "run_id": self.cfg.run_id, "dataset": self.cfg.data.dataset, "backbone": self.cfg.model.backbone,
            "strategy": self.cfg.train.strategy, "best_epoch": state.best_epoch, "epochs_run": state.epoch,
            "early_stopped": early, "train_seconds": train_seconds, "weights": self.weights,
            "device": device_label(self.device), "image_size": self.cfg.data.image_size,
            "skipped_images": [path for path, _ in self.splits.skipped],
        })
        self.dir.write_probs(probs_np, labels, index)
        return results

    def emit_finished(self, state: LoopState, results: dict) -> None:
        """results.json with the run's times, then the finished event (``total_seconds``: since the process
        started, what the console's "done ... in Ns" says)."""
        for feed in self.data.values():
            feed.close()
        total = self.times.total()
        results.update({"total_seconds": total, "phases": self.times.as_dict(), "peak_rss_mb": peak_rss_mb(),
                        "cpu": (cpu := cpu_usage()), "cpu_seconds": round(cpu["user_seconds"] + cpu["system_seconds"], 3)})
        self.dir.write_results(results)
        keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
                "f1_weighted")
        self.writer.emit(ev.Finished(best_epoch=state.best_epoch, epochs_run=state.epoch,
                                     train_seconds=results["train_seconds"], test={k: results[k] for k in keys},
                                     total_seconds=round(total, 3), phases=self.times.as_dict()))


def cpu_usage() -> dict[str, float]:
    """This process's CPU seconds (all its threads) and minor page faults: a forked worker's parent never
    waits for it, so its usage reaches no one's ``RUSAGE_CHILDREN`` (benchmarks read it here). On a shared
    machine CPU time says what a run cost where wall time only says how busy the machine was."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user_seconds": round(r.ru_utime, 3), "system_seconds": round(r.ru_stime, 3), "minor_faults": r.ru_minflt}


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Fixed:
    """The range test sets the LRs itself: a schedule that does nothing."""

    def after_step(self) -> None:
        pass


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "cuda": torch.version.cuda or "", "cudnn": str(torch.backends.cudnn.version() or "")}
