"""Fine-tuning strategies: which layer groups train, at which learning rate, when.

Layer groups come from timm's ``group_matcher`` (fine-grained: stem, each block,
head conv), ordered stem -> last; the head is always trainable. A strategy maps
a *stage* to (how many trailing backbone groups train, LR per group). Only
``gradual`` has more than one stage.

Each strategy is a registered builder of its stage plan
(``@register_strategy("partial", default_lr=1e-4, help=...)``); ``plan``,
``n_stages`` and ``stage_for_epoch`` look the entry up. Importing this module
does not import torch (the config and the orchestrator validate names with it).

Any strategy can start with a head-only warm-up (``train.head_epochs``; the
default of ``two_stage``): stage 0 trains the head at ``train.head_lr`` until
its validation loss stops improving (``head_patience``) or ``head_epochs``
have passed, then the strategy's own stages follow, numbered from 1. The switch
is decided from the metrics rows alone, so a resumed run switches where an
uninterrupted one did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from engine.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from engine.config import TrainConfig


@dataclass(frozen=True)
class StagePlan:
    stage: int
    n_trainable: int  # trailing backbone groups that train
    head_lr: float
    group_lrs: tuple[float, ...]  # one per backbone group, 0.0 where frozen


# (train config, backbone groups, stage, base LR) -> the stage's plan
PlanBuilder = Callable[["TrainConfig", int, int, float], StagePlan]


def _one_stage(cfg: "TrainConfig") -> int:
    return 1


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    default_lr: float  # head LR (and backbone LR where one LR applies)
    description: str
    build: PlanBuilder
    stages: Callable[["TrainConfig"], int] = _one_stage  # how many stages the schedule has
    stage_epochs: Callable[["TrainConfig"], int] | None = None  # epochs per stage (multi-stage only)
    head_epochs: int = 0  # the head-only warm-up when train.head_epochs is -1 (the strategy's)

    def base_lr(self, cfg: "TrainConfig") -> float:
        if isinstance(cfg.lr, str):  # "find": the trainer runs the range test and passes the result in cfg.lr
            raise ValueError(f"train.lr = {cfg.lr!r} must be resolved before a plan is built")
        return cfg.lr or self.default_lr

    def warmup_epochs(self, cfg: "TrainConfig") -> int:
        return self.head_epochs if cfg.head_epochs < 0 else cfg.head_epochs

    def n_stages(self, cfg: "TrainConfig") -> int:
        return self.stages(cfg) + (1 if self.warmup_epochs(cfg) else 0)

    def plan(self, cfg: "TrainConfig", n_groups: int, stage: int = 0) -> StagePlan:
        if self.warmup_epochs(cfg):
            if stage == 0:
                return StagePlan(0, 0, cfg.head_lr, (0.0,) * n_groups)
            own = self.build(cfg, n_groups, stage - 1, self.base_lr(cfg))
            return StagePlan(stage, own.n_trainable, own.head_lr, own.group_lrs)
        return self.build(cfg, n_groups, stage, self.base_lr(cfg))

    def own_stage(self, cfg: "TrainConfig", epoch: int) -> int:
        """1-based epoch of the strategy's own schedule -> its stage; a new one every ``stage_epochs``."""
        last = self.stages(cfg) - 1
        if last == 0 or self.stage_epochs is None:
            return 0
        return min((epoch - 1) // self.stage_epochs(cfg), last)

    def stage_for_epoch(self, cfg: "TrainConfig", epoch: int, rows: list | tuple = ()) -> int:
        """1-based epoch -> stage, given the metrics rows of the epochs before it (they end a warm-up)."""
        warm = self.warmup_epochs(cfg)
        if not warm:
            return self.own_stage(cfg, epoch)
        rows = list(rows)[: epoch - 1]
        head = [r for r in rows if r.get("stage") == 0]
        if len(head) == len(rows) and not warmup_over(head, warm, cfg.head_patience):
            return 0
        return 1 + self.own_stage(cfg, epoch - len(head))

    def stage_span(self, cfg: "TrainConfig", stage: int, first_epoch: int) -> int:
        """Epochs the stage entered at ``first_epoch`` may run (what a cosine or one-cycle schedule spans)."""
        left = cfg.epochs - first_epoch + 1
        warm = self.warmup_epochs(cfg)
        if warm and stage == 0:
            return min(warm, left)
        own = stage - (1 if warm else 0)
        if self.stage_epochs is not None and own < self.stages(cfg) - 1:
            return min(self.stage_epochs(cfg), left)
        return max(1, left)


def warmup_over(head_rows: list[dict], max_epochs: int, patience: int) -> bool:
    """The head-only warm-up ends after ``max_epochs``, or once ``patience`` epochs brought no lower val loss."""
    if len(head_rows) >= max_epochs:
        return True
    losses = [r["val_loss"] for r in head_rows]
    if len(losses) <= patience:
        return False
    return min(losses[-patience:]) >= min(losses[:-patience])


STRATEGIES: Registry[StrategyInfo] = Registry("strategy")


def register_strategy(name: str, *, default_lr: float, help: str, stages=_one_stage, stage_epochs=None,
                      head_epochs: int = 0):
    """Decorator over a ``(cfg, n_groups, stage, lr) -> StagePlan`` builder."""

    def deco(fn: PlanBuilder) -> PlanBuilder:
        STRATEGIES.add(name, StrategyInfo(name, default_lr, help, fn, stages, stage_epochs, head_epochs))
        return fn

    return deco


def get_strategy(name: str) -> StrategyInfo:
    return STRATEGIES[name]


def base_lr(cfg: "TrainConfig") -> float:
    return get_strategy(cfg.strategy).base_lr(cfg)


def n_stages(cfg: "TrainConfig") -> int:
    return get_strategy(cfg.strategy).n_stages(cfg)


def stage_for_epoch(cfg: "TrainConfig", epoch: int, rows: list | tuple = ()) -> int:
    return get_strategy(cfg.strategy).stage_for_epoch(cfg, epoch, rows)


def stage_span(cfg: "TrainConfig", stage: int, first_epoch: int) -> int:
    return get_strategy(cfg.strategy).stage_span(cfg, stage, first_epoch)


def is_warmup(cfg: "TrainConfig", stage: int) -> bool:
    """The stage is the head-only warm-up (its LR is head_lr, not the strategy's)."""
    return stage == 0 and get_strategy(cfg.strategy).warmup_epochs(cfg) > 0


def plan(cfg: "TrainConfig", n_groups: int, stage: int = 0) -> StagePlan:
    return get_strategy(cfg.strategy).plan(cfg, n_groups, stage)


@register_strategy("frozen", default_lr=1e-3, help="head only; the backbone is a fixed feature extractor")
def frozen(cfg: "TrainConfig", n_groups: int, stage: int, lr: float) -> StagePlan:
    return StagePlan(stage, 0, lr, (0.0,) * n_groups)


@register_strategy("partial", default_lr=1e-4, help="last fraction of the backbone's layer groups + head")
def partial(cfg: "TrainConfig", n_groups: int, stage: int, lr: float) -> StagePlan:
    k = min(n_groups, max(1, math.ceil(cfg.partial_fraction * n_groups)))
    return StagePlan(stage, k, lr, (0.0,) * (n_groups - k) + (lr,) * k)


@register_strategy("full", default_lr=1e-5, help="everything at one LR")
def full(cfg: "TrainConfig", n_groups: int, stage: int, lr: float) -> StagePlan:
    return StagePlan(stage, n_groups, lr, (lr,) * n_groups)


@register_strategy("gradual", default_lr=1e-3,
                   help="head first, then deeper groups stage by stage, LR lowered each stage",
                   stages=lambda cfg: cfg.gradual_stages + 1, stage_epochs=lambda cfg: cfg.gradual_stage_epochs)
def gradual(cfg: "TrainConfig", n_groups: int, stage: int, lr: float) -> StagePlan:
    k = min(n_groups, math.ceil(stage / cfg.gradual_stages * n_groups)) if stage else 0
    lr = lr * cfg.gradual_lr_decay**stage
    return StagePlan(stage, k, lr, (0.0,) * (n_groups - k) + (lr,) * k)


@register_strategy("discriminative", default_lr=1e-3,
                   help="everything; LR decays layer by layer from head to stem (min_lr)")
def discriminative(cfg: "TrainConfig", n_groups: int, stage: int, lr: float) -> StagePlan:
    # lr at the head, min_lr at the stem, geometric in between (layer-wise LR decay)
    decay = (cfg.min_lr / lr) ** (1.0 / max(1, n_groups)) if cfg.min_lr < lr else 1.0
    return StagePlan(stage, n_groups, lr, tuple(lr * decay ** (n_groups - i) for i in range(n_groups)))


@register_strategy("two_stage", default_lr=3e-4, head_epochs=5,
                   help="head alone until its val loss stops improving, then everything with layer-wise LR "
                        "(layer_decay per group from the head down)")
def two_stage(cfg: "TrainConfig", n_groups: int, stage: int, lr: float) -> StagePlan:
    # after the warm-up (stage 0, added by head_epochs): the head at lr, group i at lr * decay^(n - i)
    return StagePlan(stage, n_groups, lr, tuple(lr * cfg.layer_decay ** (n_groups - i) for i in range(n_groups)))


def layer_groups(backbone: "nn.Module") -> list[tuple[str, list[str]]]:
    """Ordered (name, parameter names) groups, stem first, from timm's group_matcher."""
    names = [n for n, _ in backbone.named_parameters()]
    groups: dict[int, list[str]] = {}
    matcher = getattr(backbone, "group_matcher", None)
    if matcher is not None:
        from timm.models import group_parameters

        try:
            groups = group_parameters(backbone, matcher(coarse=False))
        except Exception:  # a model whose matcher doesn't fit its params: fall back below
            groups = {}
    if not groups or sum(len(v) for v in groups.values()) != len(names):
        order: dict[str, list[str]] = {}
        for n in names:
            order.setdefault(n.split(".")[0], []).append(n)
        return list(order.items())
    out = []
    for _, params in sorted(groups.items()):
        out.append((_common_prefix(params), list(params)))
    return out


def _common_prefix(params: list[str]) -> str:
    """A readable group name: the shared module path, else the modules joined ("blocks.6.0+conv_head")."""
    parts = [p.split(".")[:-1] for p in params]
    prefix = []
    for level in zip(*parts):
        if all(x == level[0] for x in level):
            prefix.append(level[0])
        else:
            break
    if prefix:
        return ".".join(prefix)
    mods = dict.fromkeys(".".join(p[:3]) if p else "params" for p in parts)
    return "+".join(mods)


def apply_plan(model: "nn.Module", groups: list[tuple[str, list[str]]], p: StagePlan) -> list[dict]:
    """Set requires_grad per the plan; return optimizer param groups (name, params, lr)."""
    params = dict(model.backbone.named_parameters())
    opt_groups = []
    for (gname, pnames), lr in zip(groups, p.group_lrs):
        for n in pnames:
            params[n].requires_grad_(lr > 0)
        if lr > 0:
            opt_groups.append({"name": gname, "params": [params[n] for n in pnames], "lr": lr})
    head = list(model.head.parameters())
    for t in head:
        t.requires_grad_(True)
    opt_groups.append({"name": "head", "params": head, "lr": p.head_lr})
    return opt_groups


def set_train_mode(model: "nn.Module", bn: str = "train") -> None:
    """train() everywhere, but BatchNorm of frozen layers stays in eval (running stats fixed, as Keras does).

    ``bn="frozen"`` keeps every backbone BatchNorm in eval: its pretrained statistics normalise the new data
    and stay as they are (their scale and shift still train where the layer does). Stochastic depth
    (``model.drop_path``) is off in blocks with nothing to train.
    """
    from timm.layers import DropPath
    from torch import nn

    model.train()
    for m in model.backbone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if bn == "frozen" or not any(p.requires_grad for p in m.parameters(recurse=False)):
                m.eval()
        # stochastic depth only in blocks that train: a frozen block computes what its cached features hold
        drops = [c for c in m.children() if isinstance(c, DropPath)]
        if drops and not any(p.requires_grad for p in m.parameters()):
            for c in drops:
                c.eval()
