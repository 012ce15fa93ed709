"""Fine-tuning strategies: which layer groups train, at which learning rate, when.

Layer groups come from timm's ``group_matcher`` (fine-grained: stem, each block,
head conv), ordered stem -> last; the head is always trainable. A strategy maps
a *stage* to (how many trailing backbone groups train, LR per group). Only
``gradual`` has more than one stage.

Each strategy is a registered builder of its stage plan
(``@register_strategy("partial", default_lr=1e-4, help=...)``); ``plan``,
``n_stages`` and ``stage_for_epoch`` look the entry up. Importing this module
does not import torch (the config and the orchestrator validate names with it).
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

    def base_lr(self, cfg: "TrainConfig") -> float:
        return cfg.lr or self.default_lr

    def plan(self, cfg: "TrainConfig", n_groups: int, stage: int = 0) -> StagePlan:
        return self.build(cfg, n_groups, stage, self.base_lr(cfg))

    def stage_for_epoch(self, cfg: "TrainConfig", epoch: int) -> int:
        """1-based epoch -> stage; a new stage every ``stage_epochs`` epochs, the last one runs on."""
        last = self.stages(cfg) - 1
        if last == 0 or self.stage_epochs is None:
            return 0
        return min((epoch - 1) // self.stage_epochs(cfg), last)


STRATEGIES: Registry[StrategyInfo] = Registry("strategy")


def register_strategy(name: str, *, default_lr: float, help: str, stages=_one_stage, stage_epochs=None):
    """Decorator over a ``(cfg, n_groups, stage, lr) -> StagePlan`` builder."""

    def deco(fn: PlanBuilder) -> PlanBuilder:
        STRATEGIES.add(name, StrategyInfo(name, default_lr, help, fn, stages, stage_epochs))
        return fn

    return deco


def get_strategy(name: str) -> StrategyInfo:
    return STRATEGIES[name]


def base_lr(cfg: "TrainConfig") -> float:
    return get_strategy(cfg.strategy).base_lr(cfg)


def n_stages(cfg: "TrainConfig") -> int:
    return get_strategy(cfg.strategy).stages(cfg)


def stage_for_epoch(cfg: "TrainConfig", epoch: int) -> int:
    return get_strategy(cfg.strategy).stage_for_epoch(cfg, epoch)


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


def set_train_mode(model: "nn.Module") -> None:
    """train() everywhere, but BatchNorm of frozen layers stays in eval (running stats fixed, as Keras does)."""
    from torch import nn

    model.train()
    for m in model.backbone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in m.parameters(recurse=False)):
                m.eval()
