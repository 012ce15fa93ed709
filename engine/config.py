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
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from engine import toml_writer
from engine.errors import UserError
from engine.heads import HEADS
from engine.strategies import STRATEGIES


class ConfigError(UserError, ValueError):
    """A bad config value; the message is one line a user can act on."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "footwear"  # a recipe name, or "imagefolder:/path/to/tree"
    data_root: str = "data"  # where source datasets (CIFAR, Fashion-MNIST) are looked for
    download: bool = False  # fetch missing sources through torchvision (needs internet)
    image_size: int = 64  # side fed to the backbone; the seed used 32, ImageNet nets like more
    val_fraction: float = 0.1  # carved out of train, stratified, seeded
    batch_size: int = 64  # images per training step
    augment: bool = False  # random crop + flip + colour jitter, on the device, per batch
    train_limit: int = 0  # keep at most this many training images (class-balanced); 0 = all


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnet_lite0"  # short name (vgg16, resnet50, ...) or any timm name
    head: str = "seed"  # a registered head (engine/heads.py): "seed" (256-128 MLP with dropout) or "linear"
    weights: str = "pretrained"  # "pretrained", "random", or a path to .safetensors/.pth
    on_missing_weights: str = "fail"  # "fail" or "random" when pretrained weights can't be had


@dataclass(frozen=True)
class TrainConfig:
    strategy: str = "frozen"  # a registered strategy (engine/strategies.py)
    epochs: int = 20  # at most; early stopping may end a run sooner
    lr: float = 0.0  # 0 = the strategy's default (frozen 1e-3, partial 1e-4, full 1e-5, ...)
    optimizer: str = "adam"  # adam or adamw or sgd
    weight_decay: float = 0.0  # the optimizer's (AdamW: decoupled)
    patience: int = 5  # early stopping on val_loss; best weights are kept
    plateau_factor: float = 0.5  # ReduceLROnPlateau
    plateau_patience: int = 3  # epochs without a better val_loss before the LR is cut
    seed: int = 42  # drives the validation split, the train_limit sample, initialisation and shuffling
    class_weighting: bool = False  # weight the loss by inverse class frequency
    label_smoothing: float = 0.0  # of the cross-entropy loss
    partial_fraction: float = 0.2  # partial: last fraction of the backbone's layer groups
    gradual_stages: int = 4  # gradual: unfreezing stages after the head-only stage
    gradual_stage_epochs: int = 2  # gradual: epochs per stage
    gradual_lr_decay: float = 0.5  # gradual: LR multiplier applied at each new stage
    min_lr: float = 1e-5  # discriminative: LR of the stem (the head gets ``lr``)
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    amp: bool = True  # bf16/fp16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    threads: int = 0  # CPU threads for this run; 0 = share the machine's cores across workers
    cache_features: bool = True  # compute the frozen part of the backbone once


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_id(self) -> str:
        return run_id(self.data.dataset, self.model.backbone, self.train.strategy)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, source: str = "config") -> "RunConfig":
        """A run's ``config.json``: ``{"data": {...}, "model": {...}, "train": {...}}``; missing keys are defaults."""
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: expected a table of data, model and train settings, got {obj!r}")
        sections = {name: {} for name in SECTIONS}
        for key, value in _flatten(obj).items():
            section, name, value = parse_setting(key, value, source, scope="run")
            sections[section][name] = value
        return RunConfig(**{s: cls_(**sections[s]) for s, cls_ in SECTIONS.items()})


@dataclass(frozen=True)
class GridConfig:
    """A grid is the product of dataset, backbone and strategy names over a base config."""

    name: str = "grid"  # the grid's folder in the run store (default: the preset's or the grid file's name)
    datasets: tuple[str, ...] = ("footwear",)  # dataset names (engine/data/recipes.py) or "imagefolder:PATH"
    backbones: tuple[str, ...] = ("efficientnet_lite0",)  # short names (engine/backbones.py) or any timm model name
    strategies: tuple[str, ...] = ("frozen", "partial", "full")  # fine-tuning strategies (engine/strategies.py)
    concurrency: int = 0  # runs at once; 0 = one per GPU, or 1 on CPU
    # the settings every run shares; its dataset, backbone and strategy are unused (the lists above set them)
    base: RunConfig = field(default_factory=RunConfig)
    # per-name settings: {"full": {"train.epochs": 3}} applies to every run whose
    # dataset, backbone or strategy is "full" (TOML: [overrides.full]), in that order
    overrides: dict = field(default_factory=dict)

    def runs(self) -> list[RunConfig]:
        out = []
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
                    out.append(run)
        return out

    def to_dict(self) -> dict[str, Any]:
        """What ``grid.json`` stores (``from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: dict, source: str = "grid") -> "GridConfig":
        """A TOML grid file's table, or a stored grid.json's ``config`` (sections nested in ``base``)."""
        return cls.from_layers((obj, source))

    @classmethod
    def from_layers(cls, *layers: tuple[dict, str], start: "GridConfig | None" = None) -> "GridConfig":
        """Merge ``(settings, source)`` layers over ``start`` (default: the defaults), later beating earlier.

        A layer is a grid file's table or a flat ``{"train.epochs": 5, "datasets": "a,b"}``. Its run
        settings also replace the same keys in the earlier layers' ``overrides``: ``--epochs 5`` on the
        command line gives every run 5 epochs, whatever ``[overrides.full]`` in the file said.
        """
        draft = _Draft.of(start or GridConfig())
        for obj, source in layers:
            draft.apply(obj, source)
        return draft.freeze()

    def to_toml(self) -> str:
        """A grid file that ``load_grid_file`` reads back to this grid (every key, resolved)."""
        doc: dict[str, Any] = {k: getattr(self, k) for k in GRID_KEYS}
        for section in SECTIONS:
            values = dataclasses.asdict(getattr(self.base, section))
            doc[section] = {k: v for k, v in values.items() if f"{section}.{k}" not in GRID_OWNED}
        if self.overrides:
            doc["overrides"] = {name: dict(table) for name, table in self.overrides.items()}
        note = (f"grid {self.name!r}, resolved (command line > file > defaults).\n"
                "Run it with `finetune-tui run --grid THIS_FILE`; every key: docs/CONFIG.md.")
        return toml_writer.dumps(doc, comment=note)


def apply_settings(grid: GridConfig, settings: dict, source: str = "command line") -> GridConfig:
    """``grid`` with ``{"train.epochs": "3", "datasets": "a,b", ...}`` applied; they beat the grid's overrides."""
    return GridConfig.from_layers((settings, source), start=grid)


# --- the one parser ----------------------------------------------------------

SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
GRID_KEYS = ("name", "datasets", "backbones", "strategies", "concurrency")
# run settings a grid sets from its lists, never from a setting
GRID_OWNED = {"data.dataset": "datasets", "model.backbone": "backbones", "train.strategy": "strategies"}
COMMAND_LINE = ("command line", "--set")  # sources a user typed (their hints name flags, not file keys)

CHOICES: dict[str, Callable[[], tuple[str, ...]]] = {
    "model.head": lambda: tuple(HEADS),
    "model.on_missing_weights": lambda: ("fail", "random"),
    "train.optimizer": lambda: ("adam", "adamw", "sgd"),
    "train.strategy": lambda: tuple(STRATEGIES),
    "strategies": lambda: tuple(STRATEGIES),
}

RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.image_size": (lambda v: 8 <= v <= 1024, "8 to 1024"),
    "data.batch_size": (lambda v: v >= 1, "at least 1"),
    "data.val_fraction": (lambda v: 0.0 < v < 0.9, "above 0, below 0.9"),
    "data.train_limit": (lambda v: v >= 0, "0 (all) or more"),
    "train.epochs": (lambda v: v >= 1, "at least 1"),
    "train.patience": (lambda v: v >= 1, "at least 1"),
    "train.plateau_factor": (lambda v: 0.0 < v < 1.0, "above 0, below 1"),
    "train.partial_fraction": (lambda v: 0.0 < v <= 1.0, "above 0, at most 1"),
    "train.lr": (lambda v: 0.0 <= v < math.inf, "0 (the strategy's) or more"),
    "train.min_lr": (lambda v: 0.0 < v < math.inf, "above 0"),
    "train.gradual_stages": (lambda v: v >= 1, "at least 1"),
    "train.gradual_stage_epochs": (lambda v: v >= 1, "at least 1"),
    "train.label_smoothing": (lambda v: 0.0 <= v < 1.0, "0 or more, below 1"),
    "concurrency": (lambda v: v >= 0, "0 (automatic) or more"),
}


def parse_setting(key: str, value: Any, source: str, scope: str = "grid") -> tuple[str | None, str, Any]:
    """One ``key = value`` from ``source`` -> (section or None for a grid key, field name, checked value).

    ``scope`` says where the key appears: ``"grid"`` (a grid file's table, ``--set``, a flag: grid keys
    and run settings), ``"override"`` (an ``[overrides.NAME]`` table: run settings only), ``"run"``
    (a run's config.json, and a stored grid's ``base``: run settings, the grid-set ones included).
    """
    section, dot, name = key.partition(".")
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


def parse_set(items: list[str]) -> dict[str, str]:
    """``["train.epochs=3", ...]`` -> ``{"train.epochs": "3"}`` (``parse_setting`` checks them)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=5")
        out[key.strip()] = value.strip()
    return out


def all_keys(scope: str = "grid") -> list[str]:
    """Every key ``parse_setting`` accepts in ``scope``, dotted."""
    keys = list(GRID_KEYS) if scope == "grid" else []
    for section, cls in SECTIONS.items():
        names = [f"{section}.{f.name}" for f in fields(cls)]
        keys += [k for k in names if scope == "run" or k not in GRID_OWNED]
    return keys


def _suggest(key: str, scope: str) -> str:
    close = difflib.get_close_matches(key, all_keys(scope), n=1, cutoff=0.75)
    if close:
        return f"; did you mean {close[0]}?"
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
    return value


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is bool:
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
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

    @classmethod
    def of(cls, grid: GridConfig) -> "_Draft":
        return cls(top={k: getattr(grid, k) for k in GRID_KEYS},
                   run={s: dataclasses.asdict(getattr(grid.base, s)) for s in SECTIONS},
                   overrides={k: dict(v) for k, v in grid.overrides.items()})

    def apply(self, obj: dict, source: str) -> None:
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: expected a table of settings, got {obj!r}")
        obj = dict(obj)
        stored_base = obj.pop("base", None)  # grid.json nests the sections in "base"
        overrides = obj.pop("overrides", None)
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

    def _set(self, key: str, parsed: tuple[str | None, str, Any], earlier: dict[str, dict[str, Any]]) -> None:
        section, name, value = parsed
        if section is None:
            self.top[name] = value
            return
        self.run[section][name] = value
        for table in earlier.values():
            table.pop(key, None)

    def _add_overrides(self, overrides: Any, source: str) -> None:
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ConfigError(f"{source} overrides: expected tables like [overrides.full] with section.key = value")
        for name, table in overrides.items():
            where = f"{source} [overrides.{name}]"
            target = self.overrides.setdefault(name, {})
            for key, value in _flatten(table).items():
                target[key] = parse_setting(key, value, where, scope="override")[2]

    def freeze(self) -> GridConfig:
        base = RunConfig(**{s: cls(**self.run[s]) for s, cls in SECTIONS.items()})
        return GridConfig(**self.top, base=base, overrides=self.overrides)


def run_id(dataset: str, backbone: str, strategy: str) -> str:
    """Folder-safe id of a run: ``<dataset>__<backbone>__<strategy>``."""
    ds = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.replace("imagefolder:", "if-")).strip("-")
    return f"{ds}__{backbone}__{strategy}"


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_grid_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ConfigError(f"grid name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    return name


def read_grid_file(path: str | Path) -> dict[str, Any]:
    """A TOML grid file's table (its ``name`` defaults to the file's stem), not yet parsed."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = tomllib.load(fh)
    except FileNotFoundError:
        from engine.presets import PRESETS  # presets import this module

        raise ConfigError(f"grid file {path} not found; pass a TOML file or --preset {'|'.join(PRESETS)}") from None
    except IsADirectoryError:
        raise ConfigError(f"grid file {path} is a folder; pass a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid file {path}: invalid TOML: {exc}") from None
    obj.setdefault("name", path.stem)
    return obj


def load_grid_file(path: str | Path) -> GridConfig:
    """Read a TOML grid file; the grid's name defaults to the file's stem."""
    return GridConfig.from_dict(read_grid_file(path), source=str(path))
