"""What a study scores: extractor specs, resolved against the registries and the run store.

A spec is one of (``StudyConfig.extractors``):

- ``BACKBONE`` or ``BACKBONE@PX``: the backbone (a short name or any timm name) with its pretrained
  weights, fed PX-pixel inputs (default ``study.image_size``);
- ``run:GRID/RUN_ID``: the fine-tuned backbone of a finished run, at the run's own input size; the
  same backbone before fine-tuning (``BACKBONE@PX``, pretrained) joins the study as its "before";
- ``grid:GRID``: every finished run of a grid, each as ``run:``;
- a registered from-scratch baseline (``engine.study.baselines.BASELINES``): ``small_cnn``, ``autoencoder``.

Names are checked against the registries (backbones, baselines) and runs are read through
``engine.store``; a bad spec is a one-line UserError before anything is computed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.config import ConfigError, StudyConfig
from engine.store import RunStore, StoreError, load_run

log = logging.getLogger(__name__)

RUN, GRID = "run:", "grid:"


@dataclass(frozen=True)
class Extractor:
    """One resolved extractor of a study."""

    name: str  # unique within the study: "efficientnet_lite0@64", "run:GRID/RUN_ID", "small_cnn"
    kind: str  # "pretrained", "run" or "baseline"
    title: str  # short, for figure panels and tables
    backbone: str = ""  # pretrained and run
    image_size: int = 0  # input side (pretrained and run)
    run: str = ""  # "GRID/RUN_ID" (run)
    before: str = ""  # run: the name of the same backbone's pretrained extractor
    trained_on: str = ""  # run: the dataset it was fine-tuned on
    strategy: str = ""  # run

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _baselines() -> dict:
    from engine.study.baselines import BASELINES  # registry only; torch loads when one trains

    return BASELINES


def pretrained(backbone: str, size: int) -> Extractor:
    return Extractor(name=f"{backbone}@{size}", kind="pretrained", title=f"{backbone} ImageNet @{size}px",
                     backbone=backbone, image_size=size)


def _parse_pretrained(spec: str, cfg: StudyConfig) -> Extractor:
    from engine.backbones import resolve_backbone

    backbone, at, size_text = spec.partition("@")
    size = cfg.image_size
    if at:
        if not size_text.isdigit() or not 8 <= int(size_text) <= 1024:
            raise ConfigError(f"study extractor {spec!r}: expected BACKBONE@PX with PX 8 to 1024")
        size = int(size_text)
    resolve_backbone(backbone)  # UnknownBackbone (a UserError) with close matches
    return pretrained(backbone, size)


def _run_extractor(store: RunStore, grid: str, run_id: str) -> Extractor:
    """A finished run as an extractor; StoreError (one line) when it doesn't exist or hasn't finished."""
    rd = store.find_run(grid, run_id)
    rec = load_run(rd)
    if rec.problem:
        raise StoreError(f"study extractor run:{grid}/{run_id}: {rec.problem}")
    if rec.summary.status != "done" or not rd.has_checkpoint():
        raise StoreError(f"study extractor run:{grid}/{run_id} is {rec.summary.status}, not finished; "
                         "a run's features are studied once it is done")
    meta = rd.checkpoint_meta()
    s = rec.summary
    return Extractor(name=f"run:{grid}/{run_id}", kind="run",
                     title=f"{meta.backbone} fine-tuned ({s.strategy}, {s.dataset}) @{meta.image_size}px",
                     backbone=meta.backbone, image_size=int(meta.image_size), run=f"{grid}/{run_id}",
                     before=pretrained(meta.backbone, int(meta.image_size)).name, trained_on=s.dataset,
                     strategy=s.strategy)


def resolve(cfg: StudyConfig, store: RunStore) -> list[Extractor]:
    """The study's extractors in the order given, ``grid:`` expanded, each run's "before" added after
    the run when not listed already, duplicates dropped. UserError (one line) for a bad spec."""
    out: list[Extractor] = []
    for spec in cfg.extractors:
        spec = spec.strip()
        if spec.startswith(RUN):
            grid, slash, run_id = spec[len(RUN):].partition("/")
            if not slash or not grid or not run_id:
                raise ConfigError(f"study extractor {spec!r}: expected run:GRID/RUN_ID")
            out.append(_run_extractor(store, grid, run_id))
        elif spec.startswith(GRID):
            name = spec[len(GRID):]
            gdir = store.find_grid(name)
            finished = []
            for rd in gdir.run_dirs():
                rec = load_run(rd)
                if rec.problem:  # not silently: the user asked for every run of the grid
                    log.warning("study extractor %s leaves out %s: %s", spec, rd.run_id, rec.problem)
                elif rec.summary.status == "done" and rd.has_checkpoint():
                    finished.append(rd)
            if not finished:
                raise StoreError(f"study extractor {spec!r}: grid {name!r} has no finished run yet")
            out += [_run_extractor(store, name, rd.run_id) for rd in finished]
        elif spec in _baselines():
            out.append(Extractor(name=spec, kind="baseline", title=_baselines()[spec].title))
        else:
            out.append(_parse_pretrained(spec, cfg))
    listed = {e.name for e in out}
    full: list[Extractor] = []
    for e in out:
        if e.name not in {f.name for f in full}:
            full.append(e)
        if e.kind == "run" and e.before not in listed:
            full.append(pretrained(e.backbone, e.image_size))
            listed.add(e.before)
    return full
