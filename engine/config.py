"""Configuration as data: one frozen dataclass per concern, and one parser for every source.

Precedence is command line > grid file > defaults; a later source beats all of
an earlier one, its per-name ``[overrides.NAME]`` included. Every setting, from
a TOML file, a stored ``grid.json``, ``--set`` or a flag, goes through one
dotted-key parser (``parse_setting``): unknown keys, values of the wrong type or
out of range, and keys the grid sets itself (``data.dataset``, ``model.backbone``,
``train.strategy``) are ``ConfigError``s naming the key and the source. Each
value is checked once, when it is parsed; building a grid's runs only combines
checked values. The resolved config of every run is written to its folder
(``config.json``) and the grid's to ``grid.json``; ``GridConfig.to_toml`` writes
a grid file that reads back to the same grid.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from engine import toml_writer
from engine.data.names import dataset_id, name_problems
from engine.errors import UserError
from engine.heads import HEADS
from engine.strategies import STRATEGIES


class ConfigError(UserError, ValueError):
    """A bad config value; the message is one line a user can act on."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "footwear"  # a recipe name, "imagefolder:/path/to/tree" or "imagefolder:NAME=/path/to/tree"
    data_root: str = "data"  # where source datasets (CIFAR, Fashion-MNIST) are looked for
    download: bool = False  # fetch missing sources through torchvision (needs internet)
    image_size: int = 64  # side fed to the backbone; the seed used 32, ImageNet nets like more
    val_fraction: float = 0.1  # carved out of train, stratified, seeded
    batch_size: int = 64  # images per training step
    augment: bool = False  # random crop + flip + colour jitter, on the device, per batch
    flip: bool = True  # augment's horizontal flip; off for images of one orientation (footwear: every shoe faces left)
    train_limit: int = 0  # keep at most this many training images (class-balanced); 0 = all
    cache: bool = True  # decode each dataset once into the dataset cache, shared by every run of every grid
    cache_dir: str = ""  # where the dataset cache lives; "" = <run store>/.cache/datasets
    on_bad_image: str = "fail"  # an unreadable image file: "fail" (list them all and stop) or "skip" (train without)
    stream: str = "auto"  # "auto": splits over device_budget_mb are read from the cache batch by batch; "always", "never"
    device_budget_mb: int = 0  # memory for splits held on the device; 0 = from free memory (engine.data.budget)
    # augmentation policies (engine/augment.py), per batch on the device, training only
    auto_augment: str = "none"  # none, randaugment or trivialaugment (torchvision.transforms.v2)
    augment_magnitude: int = 9  # RandAugment's magnitude (0-30)
    random_erasing: float = 0.0  # probability of erasing a random box per image (timm's RandomErasing)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_lite0"  # short name (vgg16, resnet50, ...) or any timm name
    head: str = "seed"  # a registered head (engine/heads.py): "seed" (256-128 MLP with dropout) or "linear"
    weights: str = "pretrained"  # "pretrained", "random", or a path to .safetensors/.pth
    on_missing_weights: str = "fail"  # "fail" or "random" when pretrained weights can't be had
    # stochastic depth (timm's drop_path_rate): in training each residual block is skipped per image with a
    # chance that ramps up with depth to about this; only in blocks that train; 0 = off
    drop_path: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    strategy: str = "frozen"  # a registered strategy (engine/strategies.py)
    epochs: int = 20  # at most; early stopping may end a run sooner
    # 0 = the strategy's default (frozen 1e-3, partial 1e-4, full 1e-5, ...); "find" = an LR range test
    # (engine/lr_find.py) at the start of the strategy's first stage chooses it
    lr: float | str = 0.0
    lr_find_steps: int = 100  # batches the range test takes (it stops sooner when the loss diverges)
    optimizer: str = "adam"  # adam or adamw or sgd
    weight_decay: float = 0.0  # the optimizer's (AdamW: decoupled)
    patience: int = 5  # early stopping on val_loss; best weights are kept
    schedule: str = "plateau"  # plateau (ReduceLROnPlateau, the seed's), cosine, onecycle or constant (per stage)
    warmup_epochs: float = 0.0  # cosine/constant: linear LR warm-up at the start of each stage (fractions allowed)
    cosine_floor: float = 0.01  # cosine/onecycle: the last LR as a fraction of the stage's LR
    plateau_factor: float = 0.5  # ReduceLROnPlateau
    plateau_patience: int = 3  # epochs without a better val_loss before the LR is cut
    head_epochs: int = -1  # head-only warm-up before the strategy's stages, at most this many epochs, ended
    #                        sooner when its val loss stops improving; -1 = the strategy's (two_stage 5, others 0)
    head_lr: float = 1e-3  # the head-only warm-up's LR
    head_patience: int = 1  # warm-up epochs without a better val loss that end it
    # two_stage: LR multiplier per layer group from the head down to the stem; 0.9 puts Lite0's stem at 1/6 of the
    # head's LR, where 0.8 (1/44) lost 0.4 points on footwear (BENCHMARKS.md, issue 10)
    layer_decay: float = 0.9
    # BatchNorm of trainable layers: frozen (the pretrained statistics; measured better for fine-tuning, issue 10)
    # or train (batch statistics, updated as Keras does: the seed's); random weights always train them
    bn: str = "frozen"
    ema: bool = False  # evaluate and keep an exponential moving average of the weights (timm's ModelEmaV3)
    # per step, warmed up (timm's use_warmup: 1 - (1 + step) ** -2/3 until it reaches this, after 11,181 steps for
    # 0.998; a run that ends sooner says in its log what decay it reached)
    ema_decay: float = 0.998
    clip_grad: float = 0.0  # clip the gradient's global L2 norm to this; 0 = off
    mixup: float = 0.0  # Mixup alpha (timm's Mixup); 0 = off
    cutmix: float = 0.0  # CutMix alpha; 0 = off (with both on, each batch picks one)
    mix_prob: float = 1.0  # share of batches that get Mixup/CutMix
    tta: bool = False  # evaluate on each image and its mirror image, averaging the probabilities
    seed: int = 42  # drives the validation split, the train_limit sample, initialisation and shuffling
    class_weighting: bool = False  # weight the loss by inverse class frequency
    label_smoothing: float = 0.0  # of the cross-entropy loss
    partial_fraction: float = 0.2  # partial: last fraction of the backbone's layer groups
    gradual_stages: int = 4  # gradual: unfreezing stages after the head-only stage
    gradual_stage_epochs: int = 2  # gradual: epochs per stage
    gradual_lr_decay: float = 0.5  # gradual: LR multiplier applied at each new stage
    min_lr: float = 1e-5  # discriminative: LR of the stem (the head gets ``lr``)
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    amp: bool = True  # autocast on CUDA: bf16 where the GPU has it natively, else fp16 with loss scaling; CPU: fp32
    channels_last: bool = True  # NHWC memory format (measured faster on CUDA and on CPU: engine/speed.py)
    threads: int = 0  # CPU threads of the run; 0 = share the cores with the runs of every grid on this host
    cache_features: bool = True  # compute the frozen part of the backbone once


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # the values this run takes on the grid's [axes] (or a search trial's), as ((dotted key, value), ...);
    # they are already applied to the sections above and name the run (run_id)
    axes: tuple = ()
    trial: int = -1  # a search trial's number (run_id ends in __tNNN), -1 for grid runs

    @property
    def run_id(self) -> str:
        return run_id(self.data.dataset, self.model.backbone, self.train.strategy, self.axes, self.trial)

    @property
    def axis_values(self) -> dict[str, Any]:
        return dict(self.axes)

    def to_dict(self) -> dict[str, Any]:
        out = {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}
        if self.axes:
            out["axes"] = dict(self.axes)
        if self.trial >= 0:
            out["trial"] = self.trial
        return out

    @classmethod
    def from_dict(cls, obj: dict, source: str = "config") -> "RunConfig":
        """A run's ``config.json``: ``{"data": {...}, "model": {...}, "train": {...}}``; missing keys are defaults."""
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: expected a table of data, model and train settings, got {obj!r}")
        obj = dict(obj)
        axes = obj.pop("axes", {})
        trial = obj.pop("trial", -1)
        if not isinstance(axes, dict):
            raise ConfigError(f"{source} axes: expected a table of dotted keys and values, got {axes!r}")
        if not isinstance(trial, int) or isinstance(trial, bool):
            raise ConfigError(f"{source} trial: expected an integer, got {trial!r}")
        sections = {name: {} for name in SECTIONS}
        for key, value in _flatten(obj).items():
            section, name, value = parse_setting(key, value, source, scope="run")
            sections[section][name] = value
        checked = tuple((k, parse_setting(k, v, f"{source} axes", scope="run")[2]) for k, v in axes.items())
        return RunConfig(**{s: cls_(**sections[s]) for s, cls_ in SECTIONS.items()}, axes=checked, trial=trial)


@dataclass(frozen=True)
class SearchConfig:
    """``[search]``: an Optuna study per run of the grid; each trial is a run (engine/search.py)."""

    trials: int = 0  # trials per study; 0 = no search
    sampler: str = "tpe"  # tpe or random
    pruner: str = "median"  # median (stop a trial whose val accuracy trails the median at that epoch) or none
    startup_trials: int = 3  # trials before TPE models the space and the pruner may prune
    seed: int = 42  # the sampler's seed
    # dotted key -> [choices] or {low = ..., high = ..., log = false}; ranges for numeric keys only
    space: dict = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.trials > 0


@dataclass(frozen=True)
class GridConfig:
    """A grid is the product of dataset, backbone and strategy names and the [axes] values over a base config."""

    name: str = "grid"  # the grid's folder in the run store (default: the preset's or the grid file's name)
    datasets: tuple[str, ...] = ("footwear",)  # dataset names (engine/data/recipes.py) or "imagefolder:PATH"
    backbones: tuple[str, ...] = ("efficientnet_lite0",)  # short names (engine/backbones.py) or any timm model name
    strategies: tuple[str, ...] = ("frozen", "partial", "full")  # fine-tuning strategies (engine/strategies.py)
    concurrency: int = 0  # runs at once; 0 = one per GPU, or 1 on CPU (on a Ray cluster: as many as it holds)
    executor: str = "local"  # where runs train: local (workers on this machine) or ray (a Ray cluster's nodes)
    # the Ray cluster (executor = "ray"): "" = the one this machine belongs to, else a new local one; auto; HOST:PORT
    ray_address: str = ""
    retries: int = 1  # times a run whose node was lost starts again elsewhere (from its last checkpoint)
    # where a Ray run's files live: shared (the store on a filesystem every node mounts at the same path) or
    # ship (none: each node trains in a scratch folder; events and files are shipped to the head's store)
    ray_store: str = "shared"
    # the settings every run shares; its dataset, backbone and strategy are unused (the lists above set them)
    base: RunConfig = field(default_factory=RunConfig)
    # per-name settings: {"full": {"train.epochs": 3}} applies to every run whose
    # dataset, backbone or strategy is "full" (TOML: [overrides.full]), in that order
    overrides: dict = field(default_factory=dict)
    # hyper-parameter axes: {"train.lr": (1e-3, 3e-4), "data.image_size": (64, 96)} multiplies the runs by
    # every combination (TOML: [axes]); an axis value beats the base and the overrides, and names the run
    axes: dict = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)

    def runs(self) -> list[RunConfig]:
        """Every run: datasets x backbones x strategies (with their overrides) x the axes' combinations."""
        out = []
        keys = list(self.axes)
        for d in self.datasets:
            for b in self.backbones:
                for s in self.strategies:
                    run = replace(
                        self.base,
                        data=replace(self.base.data, dataset=d),
                        model=replace(self.base.model, backbone=b),
                        train=replace(self.base.train, strategy=s),
                    )
                    for name in (d, b, s):
                        if name in self.overrides:
                            run = _with_settings(run, self.overrides[name])
                    for combo in itertools.product(*(self.axes[k] for k in keys)):
                        values = tuple(zip(keys, combo))
                        out.append(replace(_with_settings(run, dict(values)), axes=values))
        return out

    def to_dict(self) -> dict[str, Any]:
        """What ``grid.json`` stores (``from_dict`` reads it back)."""
        out = {k: getattr(self, k) for k in GRID_KEYS}
        out["base"] = {s: dataclasses.asdict(getattr(self.base, s)) for s in SECTIONS}
        out["overrides"] = {k: dict(v) for k, v in self.overrides.items()}
        out["axes"] = {k: list(v) for k, v in self.axes.items()}
        out["search"] = dataclasses.asdict(self.search)
        return out

    @classmethod
    def from_dict(cls, obj: dict, source: str = "grid", stored: bool = False) -> "GridConfig":
        """A TOML grid file's table, or a stored grid.json's ``config`` (sections nested in ``base``).

        ``stored``: the grid was checked when it was made; an override naming nothing is dropped, not refused.
        """
        return cls.from_layers((obj, source), strict=not stored)

    @classmethod
    def from_layers(cls, *layers: tuple[dict, str], start: "GridConfig | None" = None,
                    strict: bool = True, unused: list | None = None) -> "GridConfig":
        """Merge ``(settings, source)`` layers over ``start`` (default: the defaults), later beating earlier.

        A layer is a grid file's table or a flat ``{"train.epochs": 5, "datasets": "a,b"}``. Its run
        settings also replace the same keys in the earlier layers' ``overrides``: ``--epochs 5`` on the
        command line gives every run 5 epochs, whatever ``[overrides.full]`` in the file said.

        An ``[overrides.NAME]`` whose name no layer ever listed as a dataset, backbone or strategy is a
        typo: a ConfigError naming the close match (``strict``). One for a name that was listed, then
        narrowed away (``--preset demo --strategies frozen`` leaves the preset's ``full`` table), applies
        to no run and is dropped, so the grid reads back the same from its TOML or grid.json; ``unused``, when
        given, gets a line for each such table a layer wrote (not the start grid's own: a preset's tables for
        strategies narrowed away are expected), for the caller to warn about.
        """
        draft = _Draft.of(start or GridConfig())
        for obj, source in layers:
            draft.apply(obj, source)
        grid = draft.freeze(strict)
        if unused is not None:
            kinds = {"datasets": grid.datasets, "backbones": grid.backbones, "strategies": grid.strategies}
            names = ", ".join(f"{k} {', '.join(v)}" for k, v in kinds.items())
            unused += [f"{where}: applies to no run of this grid ({names}); ignored"
                       for name, where in draft.where.items() if name not in grid.overrides]
        return grid

    def to_toml(self) -> str:
        """A grid file that ``load_grid_file`` reads back to this grid (every key, resolved)."""
        doc: dict[str, Any] = {k: getattr(self, k) for k in GRID_KEYS}
        for section in SECTIONS:
            values = dataclasses.asdict(getattr(self.base, section))
            doc[section] = {k: v for k, v in values.items() if f"{section}.{k}" not in GRID_OWNED}
        if self.overrides:
            doc["overrides"] = {name: dict(table) for name, table in self.overrides.items()}
        if self.axes:
            doc["axes"] = {k: list(v) for k, v in self.axes.items()}
        if self.search.enabled or self.search.space:
            doc["search"] = dataclasses.asdict(self.search)
        note = (f"grid {self.name!r}, resolved (command line > file > defaults).\n"
                "Run it with `finetune-tui run --grid THIS_FILE`; every key: docs/CONFIG.md.")
        return toml_writer.dumps(doc, comment=note)


def apply_settings(grid: GridConfig, settings: dict, source: str = "command line") -> GridConfig:
    """``grid`` with ``{"train.epochs": "3", "datasets": "a,b", ...}`` applied; they beat the grid's overrides."""
    return GridConfig.from_layers((settings, source), start=grid)


@dataclass(frozen=True)
class StudyConfig:
    """A feature-extractor study (engine/study): datasets x extractors, each scored on its frozen features.

    TOML: one ``[study]`` table with these keys; flags and ``--set study.KEY=VALUE`` go through the same
    parser (``parse_setting(..., scope="study")``), command line beating file beating default.
    """

    name: str = "study"  # folder in the run store
    datasets: tuple[str, ...] = ("fashion_mnist",)  # registry names or imagefolder:PATH
    # BACKBONE or BACKBONE@PX (its pretrained weights), run:GRID/RUN_ID (a finished run's fine-tuned backbone,
    # next to the same backbone before it), grid:GRID (every finished run of a grid), small_cnn, autoencoder
    extractors: tuple[str, ...] = ("efficientnet_lite0", "small_cnn", "autoencoder")
    data_root: str = "data"  # where source datasets are looked for
    download: bool = False  # fetch missing sources through torchvision (needs internet)
    image_size: int = 64  # input side for pretrained backbones; a run's extractor uses its checkpoint's size
    batch_size: int = 128  # extraction batch
    train_limit: int = 10000  # training images (class-balanced, seeded) for the probes and baselines; 0 = all
    sample: int = 2000  # seeded class-balanced test subsample for silhouette and t-SNE (quadratic); 0 = all
    normalize: str = "none"  # features before scoring: none, l2 (unit length) or standard (z-scores)
    kmeans_init: int = 10  # k-means restarts (n_init); the lowest inertia is kept
    knn_k: int = 5  # neighbours of the kNN probe
    baseline_epochs: int = 5  # training epochs of the small CNN and the autoencoder
    baseline_image_size: int = 32  # input side of the small CNN and the autoencoder
    on_missing_weights: str = "skip"  # pretrained weights unavailable: skip (one line), random (labelled), fail
    seed: int = 42  # subsamples, k-means, t-SNE, baselines
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    threads: int = 0  # CPU threads; 0 = the cores the runs of grids on this host leave (all when none run)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, source: str = "study") -> "StudyConfig":
        """A stored ``study.json`` config (the keys of this class, no ``[study]`` wrapper)."""
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: expected a table of study settings, got {obj!r}")
        return cls.from_layers(({STUDY: obj}, source))

    @classmethod
    def from_layers(cls, *layers: tuple[dict, str], start: "StudyConfig | None" = None) -> "StudyConfig":
        """Merge ``(settings, source)`` layers: a study file's table (``{"study": {...}}``) or flat dotted
        settings (``{"study.sample": "500"}``), later beating earlier."""
        values = dataclasses.asdict(start or cls())
        for obj, source in layers:
            if not isinstance(obj, dict):
                raise ConfigError(f"{source}: expected a table of settings, got {obj!r}")
            for key, value in _flatten(obj).items():
                _, name, checked = parse_setting(key, value, source, scope=STUDY)
                values[name] = checked
        check_grid_name(values["name"], "study")
        return cls(**values)

    def to_toml(self) -> str:
        """A study file that ``load_study_file`` reads back to this study."""
        note = (f"study {self.name!r}, resolved (command line > file > defaults).\n"
                "Run it with `finetune-tui study run --study THIS_FILE`; every key is in engine/config.py.")
        return toml_writer.dumps({STUDY: self.to_dict()}, comment=note)


# --- the one parser ----------------------------------------------------------

SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
GRID_KEYS = ("name", "datasets", "backbones", "strategies", "concurrency", "executor", "ray_address", "retries",
             "ray_store")
NAME_LISTS = ("datasets", "backbones", "strategies")  # the names an [overrides.NAME] table may use
STUDY = "study"  # the section (TOML table) and the parser scope of a study's settings
# run settings a grid sets from its lists, never from a setting
GRID_OWNED = {"data.dataset": "datasets", "model.backbone": "backbones", "train.strategy": "strategies"}
COMMAND_LINE = ("command line", "--set")  # sources a user typed (their hints name flags, not file keys)

CHOICES: dict[str, Callable[[], tuple[str, ...]]] = {
    "data.on_bad_image": lambda: ("fail", "skip"),
    "data.stream": lambda: ("auto", "always", "never"),
    "model.head": lambda: tuple(HEADS),
    "model.on_missing_weights": lambda: ("fail", "random"),
    "train.optimizer": lambda: ("adam", "adamw", "sgd"),
    "train.schedule": lambda: ("plateau", "cosine", "onecycle", "constant"),
    "train.bn": lambda: ("train", "frozen"),
    "data.auto_augment": lambda: ("none", "randaugment", "trivialaugment"),
    "train.strategy": lambda: tuple(STRATEGIES),
    "strategies": lambda: tuple(STRATEGIES),
    "study.normalize": lambda: ("none", "l2", "standard"),
    "executor": lambda: ("local", "ray"),
    "ray_store": lambda: ("shared", "ship"),
    "study.on_missing_weights": lambda: ("skip", "random", "fail"),
}

RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.image_size": (lambda v: 8 <= v <= 1024, "8 to 1024"),
    "data.batch_size": (lambda v: v >= 1, "at least 1"),
    "data.val_fraction": (lambda v: 0.0 < v < 0.9, "above 0, below 0.9"),
    "data.train_limit": (lambda v: v >= 0, "0 (all) or more"),
    "data.device_budget_mb": (lambda v: v >= 0, "0 (from free memory) or more"),
    "model.drop_path": (lambda v: 0.0 <= v < 1.0, "0 (off) or more, below 1"),
    "train.epochs": (lambda v: v >= 1, "at least 1"),
    "train.weight_decay": (lambda v: v >= 0.0, "0 (none) or more"),
    "train.plateau_patience": (lambda v: v >= 0, "0 or more"),
    "train.seed": (lambda v: 0 <= v < 2**32, "0 to 2**32 - 1"),
    "train.gradual_lr_decay": (lambda v: 0.0 < v <= 1.0, "above 0, at most 1"),
    "train.threads": (lambda v: v >= 0, "0 (share the cores) or more"),
    "train.patience": (lambda v: v >= 1, "at least 1"),
    "train.plateau_factor": (lambda v: 0.0 < v < 1.0, "above 0, below 1"),
    "train.partial_fraction": (lambda v: 0.0 < v <= 1.0, "above 0, at most 1"),
    "train.lr": (lambda v: v == "find" if isinstance(v, str) else 0.0 <= v < math.inf,
                 "0 (the strategy's), a positive number, or \"find\" (an LR range test)"),
    "train.head_lr": (lambda v: 0.0 < v < math.inf, "above 0"),
    "train.lr_find_steps": (lambda v: v >= 10, "at least 10"),
    "train.head_epochs": (lambda v: v >= -1, "-1 (the strategy's), 0 (none) or more"),
    "train.head_patience": (lambda v: v >= 1, "at least 1"),
    "train.layer_decay": (lambda v: 0.0 < v <= 1.0, "above 0, at most 1"),
    "train.warmup_epochs": (lambda v: 0.0 <= v < math.inf, "0 or more"),
    "train.cosine_floor": (lambda v: 0.0 <= v <= 1.0, "0 to 1"),
    "train.ema_decay": (lambda v: 0.0 < v < 1.0, "above 0, below 1"),
    "train.clip_grad": (lambda v: 0.0 <= v < math.inf, "0 (off) or more"),
    "train.mixup": (lambda v: 0.0 <= v < math.inf, "0 (off) or more"),
    "train.cutmix": (lambda v: 0.0 <= v < math.inf, "0 (off) or more"),
    "train.mix_prob": (lambda v: 0.0 <= v <= 1.0, "0 to 1"),
    "data.augment_magnitude": (lambda v: 0 <= v <= 30, "0 to 30"),
    "data.random_erasing": (lambda v: 0.0 <= v <= 1.0, "0 to 1"),
    "train.min_lr": (lambda v: 0.0 < v < math.inf, "above 0"),
    "train.gradual_stages": (lambda v: v >= 1, "at least 1"),
    "train.gradual_stage_epochs": (lambda v: v >= 1, "at least 1"),
    "train.label_smoothing": (lambda v: 0.0 <= v < 1.0, "0 or more, below 1"),
    "concurrency": (lambda v: v >= 0, "0 (automatic) or more"),
    "retries": (lambda v: v >= 0, "0 (none) or more"),
    "study.image_size": (lambda v: 8 <= v <= 1024, "8 to 1024"),
    "study.batch_size": (lambda v: v >= 1, "at least 1"),
    "study.train_limit": (lambda v: v >= 0, "0 (all) or more"),
    "study.sample": (lambda v: v == 0 or v >= 20, "0 (all) or at least 20"),
    "study.kmeans_init": (lambda v: v >= 1, "at least 1"),
    "study.knn_k": (lambda v: v >= 1, "at least 1"),
    "study.baseline_epochs": (lambda v: v >= 1, "at least 1"),
    "study.baseline_image_size": (lambda v: 16 <= v <= 256 and v % 8 == 0, "16 to 256, a multiple of 8"),
    "study.threads": (lambda v: v >= 0, "0 (all cores) or more"),
}


def _distinct_datasets(value: tuple[str, ...], source: str) -> None:
    problem = name_problems(value)
    if problem:
        raise ConfigError(f"{source} datasets: {problem}")


# whole-value checks beyond a choice or a range: (value, source) -> raises ConfigError
VALIDATORS: dict[str, Callable[[Any, str], None]] = {
    "datasets": _distinct_datasets,
}


def parse_setting(key: str, value: Any, source: str, scope: str = "grid") -> tuple[str | None, str, Any]:
    """One ``key = value`` from ``source`` -> (section or None for a grid key, field name, checked value).

    ``scope`` says where the key appears: ``"grid"`` (a grid file's table, ``--set``, a flag: grid keys
    and run settings), ``"override"`` (an ``[overrides.NAME]`` table: run settings only), ``"run"``
    (a run's config.json, and a stored grid's ``base``: run settings, the grid-set ones included),
    ``"study"`` (a study file's ``[study]`` table, ``finetune-tui study`` flags: ``study.KEY`` only).
    """
    section, dot, name = key.partition(".")
    if scope == STUDY or section == STUDY:
        return _parse_study(key, value, source, scope)
    if not dot:
        if scope == "grid" and key in GRID_KEYS:
            return None, key, _check(key, _coerce(value, _hints(GridConfig)[key], f"{source} {key}"), source)
        raise ConfigError(f"{source} {key}: unknown key{_suggest(key, scope)}")
    if section not in SECTIONS:
        raise ConfigError(f"{source} {key}: unknown section {section!r}; settings are data.KEY, model.KEY or train.KEY")
    hints = _hints(SECTIONS[section])
    if name not in hints:
        raise ConfigError(f"{source} {key}: unknown key{_suggest(key, scope)}")
    if key in GRID_OWNED and scope != "run":
        listed = GRID_OWNED[key]
        hint = f"--{listed}" if source in COMMAND_LINE else f"{listed} = [...]"
        raise ConfigError(f"{source} {key}: set by the grid; use {hint}")
    return section, name, _check(key, _coerce(value, hints[name], f"{source} {key}"), source)


def _parse_study(key: str, value: Any, source: str, scope: str) -> tuple[str, str, Any]:
    section, dot, name = key.partition(".")
    if scope != STUDY:
        raise ConfigError(f"{source} {key}: a study setting; it belongs in a study file's [study] table "
                          "(`finetune-tui study run --study FILE`)")
    hints = _hints(StudyConfig)
    if section != STUDY or not dot or name not in hints:
        raise ConfigError(f"{source} {key}: unknown key{_suggest(key, scope)}")
    return STUDY, name, _check(key, _coerce(value, hints[name], f"{source} {key}"), source)


def parse_set(items: list[str], flag: str = "--set", example: str = "train.epochs=5") -> dict[str, str]:
    """``["train.epochs=3", ...]`` -> ``{"train.epochs": "3"}`` (``parse_setting`` checks them)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected section.key=value, e.g. {example}")
        out[key.strip()] = value.strip()
    return out


def all_keys(scope: str = "grid") -> list[str]:
    """Every key ``parse_setting`` accepts in ``scope``, dotted."""
    if scope == STUDY:
        return [f"{STUDY}.{f.name}" for f in fields(StudyConfig)]
    keys = list(GRID_KEYS) if scope == "grid" else []
    for section, cls in SECTIONS.items():
        names = [f"{section}.{f.name}" for f in fields(cls)]
        keys += [k for k in names if scope == "run" or k not in GRID_OWNED]
    return keys


def _suggest(key: str, scope: str) -> str:
    close = difflib.get_close_matches(key, all_keys(scope), n=1, cutoff=0.75)
    if close:
        return f"; did you mean {close[0]}?"
    if scope == STUDY:
        return "; a study file holds one [study] table of the keys in engine/config.py's StudyConfig"
    if scope == "grid":
        return f"; grid keys are {', '.join(GRID_KEYS)}, and data.KEY, model.KEY, train.KEY settings"
    return "; settings are data.KEY, model.KEY or train.KEY (see engine/config.py)"


@lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check(key: str, value: Any, source: str) -> Any:
    if key in CHOICES:
        allowed = CHOICES[key]()
        for v in value if isinstance(value, tuple) else (value,):
            if v not in allowed:
                raise ConfigError(f"{source} {key}: {v!r} is not one of {', '.join(allowed)}")
    if key in RANGES and not RANGES[key][0](value):
        raise ConfigError(f"{source} {key}: {value!r} is out of range ({RANGES[key][1]})")
    if key in VALIDATORS:
        VALIDATORS[key](value, source)
    return value


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # train.lr: a number, else a word ("find")
        for member in typing.get_args(typ):
            try:
                return _coerce(value, member, where)
            except ConfigError:
                continue
    elif typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    elif typ is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # nan/inf pass every range check, then break JSON and the optimiser
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return number
    elif typ is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(i, str) for i in items):
            items = tuple(i.strip() for i in items if i.strip())
            if items:
                return items
    raise ConfigError(f"{where}: expected {_type_name(typ)}, got {value!r}")


def _type_name(typ: Any) -> str:
    if typing.get_origin(typ) is tuple:
        return "a list of names"
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(typ))
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(typ, str(typ))


def _flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``; dotted keys pass through."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _with_settings(run: RunConfig, settings: dict[str, Any]) -> RunConfig:
    """``run`` with checked dotted settings applied (the parser checked them when they came in)."""
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in _flatten(settings).items():
        section, _, name = key.partition(".")
        by_section.setdefault(section, {})[name] = value
    return replace(run, **{s: replace(getattr(run, s), **kw) for s, kw in by_section.items()})


@dataclass
class _Draft:
    """A grid being merged from layers: checked values only, frozen into a GridConfig at the end."""

    top: dict[str, Any]
    run: dict[str, dict[str, Any]]
    overrides: dict[str, dict[str, Any]]
    listed: set = field(default_factory=set)  # every dataset, backbone and strategy name any layer listed
    where: dict = field(default_factory=dict)  # override name -> the source that introduced it
    axes: dict[str, tuple] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, grid: GridConfig) -> "_Draft":
        # the start grid (a preset, the defaults) is code: its override names count as listed
        listed = {*grid.datasets, *grid.backbones, *grid.strategies, *grid.overrides}
        return cls(top={k: getattr(grid, k) for k in GRID_KEYS},
                   run={s: dataclasses.asdict(getattr(grid.base, s)) for s in SECTIONS},
                   overrides={k: dict(v) for k, v in grid.overrides.items()}, listed=listed,
                   axes=dict(grid.axes), search=dataclasses.asdict(grid.search))

    def apply(self, obj: dict, source: str) -> None:
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: expected a table of settings, got {obj!r}")
        obj = dict(obj)
        stored_base = obj.pop("base", None)  # grid.json nests the sections in "base"
        overrides = obj.pop("overrides", None)
        axes = obj.pop("axes", None)
        search = obj.pop("search", None)
        before = self.overrides
        earlier = {k: dict(v) for k, v in before.items()}
        if stored_base is not None:
            if not isinstance(stored_base, dict):
                raise ConfigError(f"{source} base: expected a table of data, model and train settings")
            for key, value in _flatten(stored_base).items():
                self._set(key, parse_setting(key, value, source, scope="run"), earlier)
        for key, value in _flatten(obj).items():
            self._set(key, parse_setting(key, value, source, scope="grid"), earlier)
        # what this layer set beats what earlier layers said for some names only; a table it
        # emptied goes (one that was empty to begin with stays)
        self.overrides = {k: v for k, v in earlier.items() if v or not before[k]}
        if overrides is not None:
            self._add_overrides(overrides, source)
        if axes is not None:
            self._add_axes(axes, source)
        if search is not None:
            self.search = parse_search(search, source, self.search)

    def _set(self, key: str, parsed: tuple[str | None, str, Any], earlier: dict[str, dict[str, Any]]) -> None:
        section, name, value = parsed
        if section is None:
            self.top[name] = value
            if name in NAME_LISTS:
                self.listed.update(value)
            return
        self.run[section][name] = value
        for table in earlier.values():
            table.pop(key, None)
        self.axes.pop(key, None)  # a setting given later beats an earlier layer's axis of the same key

    def _add_overrides(self, overrides: Any, source: str) -> None:
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ConfigError(f"{source} overrides: expected tables like [overrides.full] with section.key = value")
        for name, table in overrides.items():
            where = f"{source} [overrides.{name}]"
            self.where.setdefault(name, where)
            target = self.overrides.setdefault(name, {})
            for key, value in _flatten(table).items():
                target[key] = parse_setting(key, value, where, scope="override")[2]

    def _add_axes(self, axes: Any, source: str) -> None:
        if not isinstance(axes, dict):
            raise ConfigError(f"{source} axes: expected a table like [axes] \"train.lr\" = [1e-3, 3e-4]")
        for key, values in _flatten(axes).items():
            where = f"{source} [axes]"
            if isinstance(values, str):
                values = [v for v in values.split(",") if v.strip()]
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"{where} {key}: expected a list of values, e.g. [64, 96]")
            checked = tuple(parse_setting(key, v, where, scope="override")[2] for v in values)
            if len(set(map(repr, checked))) != len(checked):
                raise ConfigError(f"{where} {key}: lists a value twice")
            self.axes[key] = checked

    def freeze(self, strict: bool = True) -> GridConfig:
        names = {n for key in NAME_LISTS for n in self.top[key]}
        if strict:
            for name in self.overrides:
                if name not in names and name not in self.listed:
                    known = sorted(names | self.listed)
                    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]}?" if close else f"; the grid's names are {', '.join(known)}"
                    raise ConfigError(f"{self.where.get(name, f'[overrides.{name}]')}: {name!r} matches no "
                                      f"dataset, backbone or strategy of the grid{hint}")
        overrides = {k: v for k, v in self.overrides.items() if k in names}  # the rest apply to no run
        base = RunConfig(**{s: cls(**self.run[s]) for s, cls in SECTIONS.items()})
        return GridConfig(**self.top, base=base, overrides=overrides, axes=self.axes,
                          search=SearchConfig(**self.search))


SEARCH_CHOICES = {"sampler": ("tpe", "random"), "pruner": ("median", "none")}


def parse_search(table: Any, source: str, start: dict | None = None) -> dict[str, Any]:
    """A ``[search]`` table over ``start`` -> checked SearchConfig fields; ``space`` entries are checked
    against their keys' types (a range needs an int or float key)."""
    where = f"{source} [search]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table with trials, space, ...")
    out = dict(start or dataclasses.asdict(SearchConfig()))
    hints = _hints(SearchConfig)
    for key, value in table.items():
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=1)
            raise ConfigError(f"{where} {key}: unknown key" + (f"; did you mean {close[0]}?" if close else ""))
        if key == "space":
            out["space"] = _parse_space(value, where)
            continue
        value = _coerce(value, hints[key], f"{where} {key}")
        if key in SEARCH_CHOICES and value not in SEARCH_CHOICES[key]:
            raise ConfigError(f"{where} {key}: {value!r} is not one of {', '.join(SEARCH_CHOICES[key])}")
        if key in ("trials", "startup_trials") and value < 0:
            raise ConfigError(f"{where} {key}: {value!r} is out of range (0 or more)")
        out[key] = value
    if out["trials"] and not out["space"]:
        raise ConfigError(f"{where}: trials = {out['trials']} but no [search.space] to search")
    return out


def _parse_space(space: Any, where: str) -> dict[str, Any]:
    if not isinstance(space, dict):
        raise ConfigError(f"{where} space: expected a table of dotted keys, e.g. \"train.lr\" = {{low = 1e-4, high = 1e-2, log = true}}")
    out: dict[str, Any] = {}
    for key, spec in space.items():
        at = f"{where} space {key}"
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ConfigError(f"{at}: an empty list of choices")
            out[key] = [parse_setting(key, v, at, scope="override")[2] for v in spec]
            continue
        if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log"}:
            raise ConfigError(f"{at}: expected [choices] or {{low = ..., high = ..., log = false}}")
        low = parse_setting(key, spec["low"], at, scope="override")[2]
        high = parse_setting(key, spec["high"], at, scope="override")[2]
        if type(low) not in (int, float):
            raise ConfigError(f"{at}: a range needs a numeric key; give a list of choices instead")
        log = _coerce(spec.get("log", False), bool, f"{at} log")
        if not low < high or (log and low <= 0):
            raise ConfigError(f"{at}: needs low < high (and low > 0 with log = true)")
        out[key] = {"low": low, "high": high, "log": log}
    return out


def run_id(dataset: str, backbone: str, strategy: str, axes: tuple = (), trial: int = -1) -> str:
    """Folder-safe id of a run: ``<dataset>__<backbone>__<strategy>``, then ``__<key>=<value>`` per axis
    (the key's last part: ``__lr=0.0003__image_size=96``) and ``__t<NNN>`` for a search trial. An image
    folder's dataset part is its name (``imagefolder:/data/tops`` -> ``tops``, ``imagefolder:NAME=PATH`` ->
    ``NAME``)."""
    out = f"{dataset_id(dataset)}__{backbone}__{strategy}"
    if trial >= 0:
        return f"{out}__t{trial:03d}"
    names = [k.rpartition(".")[2] for k, _ in axes]
    for (key, value), name in zip(axes, names):
        label = name if names.count(name) == 1 else key  # data.x and train.x both varied: spell them out
        out += f"__{label}={_safe(axis_label(value))}"
    return out


def axis_label(value: Any) -> str:
    """How an axis value reads in a run id and a table: 0.0003, 96, true, cosine."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_grid_name(name: str, what: str = "grid") -> str:
    if not _NAME_RE.match(name):
        raise ConfigError(f"{what} name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    return name


def _read_toml(path: Path, what: str, missing_hint: str) -> dict[str, Any]:
    """A TOML file's table; every way of not being one is a ConfigError naming the file (``what``: grid, study)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        # a UTF-8 byte-order mark (Windows editors write one) is not TOML: "invalid statement at line 1,
        # column 1" named nothing a user could see; it is read past instead
        return tomllib.loads(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} not found; {missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} file {path} is a folder; pass a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib raises this before it parses anything
        raise ConfigError(f"{what} file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML") from None


def read_grid_file(path: str | Path) -> dict[str, Any]:
    """A TOML grid file's table (its ``name`` defaults to the file's stem), not yet parsed."""
    from engine.presets import PRESETS  # presets import this module

    path = Path(path)
    obj = _read_toml(path, "grid", f"pass a TOML file or --preset {'|'.join(PRESETS)}")
    obj.setdefault("name", path.stem)
    return obj


def read_study_file(path: str | Path) -> dict[str, Any]:
    """A TOML study file's table (one ``[study]`` table; its ``name`` defaults to the file's stem), not yet parsed."""
    path = Path(path)
    obj = _read_toml(path, "study", "pass a TOML file with a [study] table")
    table = obj.get(STUDY)
    if not isinstance(table, dict):
        raise ConfigError(f"study file {path} has no [study] table; see `finetune-tui study run --show-config`")
    table.setdefault("name", path.stem)
    return obj


def load_study_file(path: str | Path) -> StudyConfig:
    return StudyConfig.from_layers((read_study_file(path), str(path)))


def load_grid_file(path: str | Path) -> GridConfig:
    """Read a TOML grid file; the grid's name defaults to the file's stem."""
    return GridConfig.from_dict(read_grid_file(path), source=str(path))
