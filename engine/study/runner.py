"""Run a prepared study: every dataset x extractor becomes one cell of scores, projections and timings.

A cell that finished is never computed again: running the same study once
more resumes it (a killed or cancelled study loses at most the cell it was
in). After each dataset the figures and ``metrics.csv`` are redrawn from the
cells, so a running study already shows what it has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from engine.config import StudyConfig
from engine.cpu_claims import Claim, claimed, cpu_threads
from engine.data import DatasetSplits
from engine.errors import UserError
from engine.store import FileLock, RunStore, StoreError, StudyDir, StudyStatus, cell_key
from engine.study import adapter, baselines, projection, scoring
from engine.study.extractors import Extractor, resolve
from engine.study.progress import Cancelled, Echo, Progress, StudyBusy

log = logging.getLogger(__name__)

# metrics.csv: these first, in this order; then everything else a cell records
COLUMNS = ("dataset", "extractor", "title", "kind", "status", "dim", "silhouette", "davies_bouldin", "ari", "nmi",
           "knn_accuracy", "linear_probe_accuracy", "silhouette_kmeans", "davies_bouldin_kmeans", "img_per_s",
           "extract_seconds", "n_test", "silhouette_n", "kmeans_n", "probe_train_n", "tsne_n", "note")


@dataclass
class Features:
    train: np.ndarray
    test: np.ndarray
    seconds: float  # test split extraction, preprocessing included
    train_seconds: float  # training the extractor (baselines) or the run's fine-tuning; 0 for pretrained
    weights: str
    extra: dict


class Skip(Exception):
    """An extractor that can't be had here (no pretrained weights and study.on_missing_weights = skip)."""


class StudyRunner:
    def __init__(self, sdir: StudyDir, echo: Echo | None = None):
        self.sdir = sdir
        self.cfg: StudyConfig = sdir.config()
        self.order: list[str] = []  # extractor names in the study's order (tables and figures follow it)
        self.store = RunStore(sdir.path.parent)
        self.echo = echo
        self.skipped: dict[str, str] = {}  # extractor name -> why (once per extractor, not per dataset)

    # --- the whole study ----------------------------------------------------------------

    def run(self, lock: FileLock | None = None) -> StudyStatus:
        """Run every pending cell under ``study.lock`` (``lock``: already held by the caller, else taken here)."""
        own = lock is None
        lock = lock or self.sdir.lock()
        if own and not lock.acquire():
            raise StudyBusy(f"study {self.sdir.name!r} is already running (another process holds "
                            f"{self.sdir.lock_file})")
        try:
            return self._run()
        finally:
            if own:
                lock.release()

    def _run(self) -> StudyStatus:
        self.sdir.clear_cancel()
        status = StudyStatus(status="running", pid=os.getpid(), started=time.time())
        self.progress = progress = Progress(self.sdir, status, self.echo)
        limits = contextlib.nullcontext()
        threads, claim = self._cpu_share()
        if threads:  # torch's threads and scikit-learn's (OpenMP, BLAS) alike
            torch.set_num_threads(threads)
            limits = threadpool_limits(limits=threads)
        try:
            with limits:
                self._all()
        except (Cancelled, KeyboardInterrupt) as exc:
            progress.end("cancelled", message=f"cancelled ({exc or 'interrupted'}); run it again to resume")
            return status
        except UserError as exc:
            progress.end("failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return status
        except Exception as exc:  # noqa: BLE001 - every ending is one line in status.json; the traceback in the log
            log.error("study failed:\n%s", traceback.format_exc())
            first = (str(exc).splitlines() or [""])[0][:200]
            progress.end("failed", error=f"internal error: {type(exc).__name__}: {first} (traceback in "
                                         f"{self.sdir.log_file.name})")
            return status
        finally:
            if claim is not None:
                claim.stop()
        scored = len(self.sdir.cells())
        progress.end("done", message=f"study {self.sdir.name} done: {scored} cell(s) scored, "
                                     f"{len(self.skipped)} extractor(s) skipped")
        return status

    def _cpu_share(self) -> tuple[int, Claim | None]:
        """The study's CPU threads (0: torch's default, all cores) and its claim on them among the host's
        grids (engine.cpu_claims): with ``threads = 0`` beside other grids' runs, the cores they leave."""
        cfg = self.cfg
        if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()):
            return cfg.threads, None
        threads, cores = cfg.threads, os.cpu_count() or 1
        if not threads:
            runs, used = claimed()
            if runs:
                threads = cpu_threads(cores, 1, [], runs, used)
                self.progress.note(f"{runs} run(s) of grids on this host use {used} CPU thread(s): the study gets "
                                  f"{threads} of {cores} cores (study.threads sets a number)")
        return threads, Claim(threads or cores).start()

    def _all(self) -> None:
        cfg, status = self.cfg, self.progress.status
        self.device = adapter.device(cfg.device)
        self.progress.stage("resolving extractors")
        extractors = resolve(cfg, self.store)
        self.order = [e.name for e in extractors]
        status.total = len(cfg.datasets) * len(extractors)
        status.done = sum(self.sdir.cell(cell_key(d, e.name)) is not None for d in cfg.datasets for e in extractors)
        for ds in cfg.datasets:
            self._dataset(ds, extractors)

    def _dataset(self, ds: str, extractors: list[Extractor]) -> None:
        pending = [e for e in extractors if self.sdir.cell(cell_key(ds, e.name)) is None]
        if pending:
            self.progress.stage(f"loading {ds}", current=ds)
            splits, self.data_cache = adapter.load_splits(ds, self.cfg, self.store.dataset_cache)
            sample = self._sample(ds, splits)
            for ex in pending:
                self._cell(ds, splits, sample, ex)
        self._publish(ds)

    def _sample(self, ds: str, splits: DatasetSplits) -> np.ndarray:
        """The dataset's seeded, class-balanced test sample; kept, so a resumed study shows the same points."""
        y = splits.test.y.numpy()
        positions = adapter.balanced_positions(y, self.cfg.sample, self.cfg.seed)
        index = splits.test.index.numpy()[positions]
        path = self.sdir.sample_file(ds)
        if path.is_file():
            with np.load(path, allow_pickle=False) as old:
                same = old["positions"].shape == positions.shape and np.array_equal(old["index"], index)
            if not same:
                raise StoreError(f"the test split of {ds} is not the one study {self.sdir.name!r} began with "
                                 f"({path}); start a study of another name")
        else:
            self.sdir.write_npz(path, positions=positions, index=index, labels=y[positions])
        return positions

    # --- one cell ----------------------------------------------------------------------------

    def _cell(self, ds: str, splits: DatasetSplits, sample: np.ndarray, ex: Extractor) -> None:
        cell = cell_key(ds, ex.name)
        where = f"{ds} / {ex.name}"
        if ex.name in self.skipped:
            self.progress.cell_done(f"{where}: skipped ({self.skipped[ex.name]})")
            return
        try:
            feats = self._features(ds, splits, ex, cell, where)
        except Skip as exc:
            self.skipped[ex.name] = str(exc)
            self.progress.note(f"extractor {ex.name}: skipped: {exc}")
            self.progress.cell_done(f"{where}: skipped")
            return
        cfg = self.cfg
        train_x, test_x = scoring.normalise(feats.train, feats.test, cfg.normalize)
        y_train, y_test = splits.train.y.numpy(), splits.test.y.numpy()
        self.progress.stage(f"k-means (k={splits.n_classes}, {cfg.kmeans_init} starts), silhouette, Davies-Bouldin",
                            current=where)
        scores = scoring.clustering(test_x, y_test, sample, splits.n_classes, cfg.seed, cfg.kmeans_init)
        self.progress.stage(f"kNN (k={cfg.knn_k}) and linear probe on {len(y_train)} training images", current=where)
        scores |= scoring.probes(train_x, y_train, test_x, y_test, cfg.knn_k, cfg.seed)
        self.progress.stage(f"PCA and t-SNE of {len(sample)} test images", current=where)
        proj = projection.project(test_x, sample, cfg.seed)
        self.sdir.write_npz(self.sdir.points_file(cell), pca=proj["pca"], tsne=proj["tsne"], labels=y_test[sample],
                            positions=sample, pca_variance=proj["pca_variance"])
        record = {
            **ex.to_dict(), "dataset": ds, "extractor": ex.name, "status": "done", "weights": feats.weights,
            "classes": list(splits.classes), "n_classes": splits.n_classes, "dim": int(feats.test.shape[1]),
            "n_test": len(y_test), "n_train": len(y_train), "tsne_n": len(sample), "normalize": cfg.normalize,
            "extract_seconds": feats.seconds, "img_per_s": len(y_test) / max(feats.seconds, 1e-9),
            "batch_size": cfg.batch_size, "device": str(self.device), "threads": torch.get_num_threads(),
            "host": socket.gethostname(), "load_avg": round(os.getloadavg()[0], 2),
            "train_seconds": feats.train_seconds, "seed": cfg.seed,
            "pca_variance": [float(v) for v in proj["pca_variance"]], "pca_seconds": proj["pca_seconds"],
            "tsne_seconds": proj["tsne_seconds"], "tsne_perplexity": proj["tsne_perplexity"],
            "tsne_pca_dims": proj["tsne_pca_dims"], "source": splits.source, "data_cache": self.data_cache,
            "versions": adapter.versions(),
            "finished": time.time(), **scores, **feats.extra,
        }
        self.sdir.write_cell(cell, record)
        self.progress.cell_done(
            f"{where}: silhouette {scores['silhouette']:.3f}, Davies-Bouldin {scores['davies_bouldin']:.3f}, "
            f"ARI {scores['ari']:.3f}, NMI {scores['nmi']:.3f}, kNN {scores['knn_accuracy']:.3f}, "
            f"linear {scores['linear_probe_accuracy']:.3f}; {record['img_per_s']:.0f} img/s")

    def _features(self, ds: str, splits: DatasetSplits, ex: Extractor, cell: str, where: str) -> Features:
        if ex.kind == "baseline":
            return self._baseline(ds, splits, ex, cell, where)
        extra: dict = {}
        train_seconds = 0.0
        if ex.kind == "run":
            grid, run_id = ex.run.split("/", 1)
            rd = self.store.find_run(grid, run_id)
            backbone, meta = adapter.run_backbone(rd.best)
            results = rd.results() or {}
            train_seconds = float(results.get("train_seconds") or 0.0)
            extra = {"run_test_accuracy": results.get("accuracy"), "run_epoch": meta.get("epoch")}
        else:
            from engine.weights import WeightsError

            try:
                backbone = adapter.pretrained_backbone(ex.backbone, ex.image_size, self.cfg.on_missing_weights)
            except WeightsError as exc:
                if self.cfg.on_missing_weights == "skip":
                    raise Skip(str(exc).split(";")[0]) from None
                raise
            if not backbone.pretrained:
                self.progress.note(f"extractor {ex.name}: {backbone.weights}")
                extra["title"] = f"{ex.backbone} random init @{ex.image_size}px"
        bs = self.cfg.batch_size
        self.progress.stage(f"extracting {len(splits.test)} test images", len(splits.test), current=where)
        test, seconds = adapter.extract(backbone, splits.test.x, bs, self.device, self.progress.step)
        self.progress.stage(f"extracting {len(splits.train)} training images", len(splits.train), current=where)
        train, _ = adapter.extract(backbone, splits.train.x, bs, self.device, self.progress.step)
        return Features(train, test, seconds, train_seconds, backbone.weights, extra)

    def _baseline(self, ds: str, splits: DatasetSplits, ex: Extractor, cell: str, where: str) -> Features:
        cfg, info = self.cfg, baselines.BASELINES[ex.name]
        size, path = cfg.baseline_image_size, self.sdir.model_file(cell)
        model = baselines.load(ex.name, path, splits.n_classes, size) if path.is_file() else None
        train_seconds, extra = 0.0, {}
        if model is None:
            what = "with labels" if info.supervised else "without labels (reconstruction)"
            self.progress.stage(f"training {ex.name} {what}: {cfg.baseline_epochs} epochs on {len(splits.train)} "
                                f"images at {size}px", current=where)
            trained = baselines.train(ex.name, splits.train.x, splits.train.y, splits.n_classes, size,
                                      cfg.baseline_epochs, cfg.seed, self.device, self.progress.step)
            model, train_seconds = trained.model, trained.seconds
            extra = {"baseline_final_loss": trained.final_loss}
            baselines.save(model, lambda fn: self.sdir.write_with(path, fn),
                           {"baseline": ex.name, "dataset": ds, "epochs": trained.epochs, "seed": cfg.seed,
                            "image_size": size, "n_classes": splits.n_classes, "train_seconds": train_seconds,
                            "final_loss": trained.final_loss})
        extra |= {"baseline_epochs": cfg.baseline_epochs, "image_size": size}
        bs = cfg.batch_size
        self.progress.stage(f"extracting {len(splits.test)} test images", len(splits.test), current=where)
        test, seconds = baselines.extract(model, splits.test.x, size, bs, self.device, self.progress.step)
        self.progress.stage(f"extracting {len(splits.train)} training images", len(splits.train), current=where)
        train, _ = baselines.extract(model, splits.train.x, size, bs, self.device, self.progress.step)
        weights = f"trained here from scratch ({cfg.baseline_epochs} epochs, {len(splits.train)} images, seed {cfg.seed})"
        return Features(train, test, seconds, train_seconds, weights, extra)

    # --- tables and figures --------------------------------------------------------------------

    def _publish(self, ds: str) -> None:
        """metrics.csv from every cell so far (skipped extractors as rows saying why), then the dataset's figures."""
        self.progress.stage(f"tables and figures of {ds}", current=ds)
        self.write_metrics()
        from study import figures  # matplotlib; a figure that fails costs a note, not the study

        for line in figures.draw_dataset(self.sdir, ds):
            self.progress.note(line)

    def write_metrics(self) -> pd.DataFrame:
        rows = [{k: v for k, v in c.items() if not isinstance(v, (list, dict))} for c in self.sdir.cells()]
        for name, why in self.skipped.items():
            rows += [{"dataset": ds, "extractor": name, "status": "skipped", "note": why} for ds in self.cfg.datasets]
        datasets = list(self.cfg.datasets)
        rank = {name: i for i, name in enumerate(self.order)}
        rows.sort(key=lambda r: (datasets.index(r["dataset"]) if r["dataset"] in datasets else len(datasets),
                                 rank.get(r["extractor"], len(rank)), str(r["extractor"])))
        frame = pd.DataFrame(rows)
        for col in COLUMNS:
            if col not in frame:
                frame[col] = np.nan
        frame = frame[list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]]
        self.sdir.write_with(self.sdir.metrics_csv, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))
        return frame
