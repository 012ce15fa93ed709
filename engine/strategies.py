"""Fine-tuning strategies: which layer groups train, at which learning rate, when.

Layer groups come from timm's ``group_matcher`` (fine-grained: stem, each block,
head conv), ordered stem -> last; the head is always trainable. A strategy maps
a *stage* to (how many trailing backbone groups train, LR per group). Only
``gradual`` has more than one stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from engine.config import TrainConfig


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    default_lr: float  # head LR (and backbone LR where one LR applies)
    description: str


STRATEGIES: dict[str, StrategyInfo] = {
    s.name: s
    for s in (
        StrategyInfo("frozen", 1e-3, "head only; the backbone is a fixed feature extractor"),
        StrategyInfo("partial", 1e-4, "last fraction of the backbone's layer groups + head"),
        StrategyInfo("full", 1e-5, "everything at one LR"),
        StrategyInfo("gradual", 1e-3, "head first, then deeper groups stage by stage, LR lowered each stage"),
        StrategyInfo("discriminative", 1e-3, "everything; LR decays layer by layer from head to stem (min_lr)"),
    )
}


def get_strategy(name: str) -> StrategyInfo:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"strategy {name!r} not found; choose one of {', '.join(STRATEGIES)}") from None


def layer_groups(backbone: nn.Module) -> list[tuple[str, list[str]]]:
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


@dataclass(frozen=True)
class StagePlan:
    stage: int
    n_trainable: int  # trailing backbone groups that train
    head_lr: float
    group_lrs: tuple[float, ...]  # one per backbone group, 0.0 where frozen


def base_lr(cfg: TrainConfig) -> float:
    return cfg.lr or get_strategy(cfg.strategy).default_lr


def n_stages(cfg: TrainConfig) -> int:
    return cfg.gradual_stages + 1 if cfg.strategy == "gradual" else 1


def stage_for_epoch(cfg: TrainConfig, epoch: int) -> int:
    """1-based epoch -> stage; gradual moves on every ``gradual_stage_epochs`` (last stage runs on)."""
    if cfg.strategy != "gradual":
        return 0
    return min((epoch - 1) // cfg.gradual_stage_epochs, cfg.gradual_stages)


def plan(cfg: TrainConfig, n_groups: int, stage: int = 0) -> StagePlan:
    lr = base_lr(cfg)
    name = cfg.strategy
    get_strategy(name)
    if name == "frozen":
        k, lrs = 0, [0.0] * n_groups
    elif name == "partial":
        k = min(n_groups, max(1, math.ceil(cfg.partial_fraction * n_groups)))
        lrs = [0.0] * (n_groups - k) + [lr] * k
    elif name == "full":
        k, lrs = n_groups, [lr] * n_groups
    elif name == "discriminative":
        # lr at the head, min_lr at the stem, geometric in between (layer-wise LR decay)
        decay = (cfg.min_lr / lr) ** (1.0 / max(1, n_groups)) if cfg.min_lr < lr else 1.0
        k, lrs = n_groups, [lr * decay ** (n_groups - i) for i in range(n_groups)]
    else:  # gradual
        k = min(n_groups, math.ceil(stage / cfg.gradual_stages * n_groups)) if stage else 0
        lr = lr * cfg.gradual_lr_decay**stage
        lrs = [0.0] * (n_groups - k) + [lr] * k
    return StagePlan(stage, k, lr, tuple(lrs))


def apply_plan(model: nn.Module, groups: list[tuple[str, list[str]]], p: StagePlan) -> list[dict]:
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


def set_train_mode(model: nn.Module) -> None:
    """train() everywhere, but BatchNorm of frozen layers stays in eval (running stats fixed, as Keras does)."""
    model.train()
    for m in model.backbone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in m.parameters(recurse=False)):
                m.eval()
