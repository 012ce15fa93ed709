"""The report's feature-extractor study section: the studies of the grid's store that concern the grid.

A study concerns a grid when it scores one of the grid's runs (``run:GRID/...``, ``grid:GRID``) or
one of its datasets. Its table, targets and figures are copied into the report folder (the report
stays self-contained: report.html inlines every PNG of its folder). Torch-free, like the report's
other readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from engine.store import GridDir, RunStore, StoreError, StudyDir, atomic_write, atomic_write_bytes

STEP = "feature-extractor study"  # report steps of this section start with this
PREFIX = "study_"
TABLE = {"extractor": "extractor", "dim": "dim", "silhouette": "silhouette", "davies_bouldin": "Davies-Bouldin ↓",
         "silhouette_kmeans": "silhouette (k-means)", "davies_bouldin_kmeans": "DB (k-means) ↓", "ari": "ARI",
         "nmi": "NMI", "knn_accuracy": "kNN acc", "linear_probe_accuracy": "linear acc", "img_per_s": "img/s",
         "n_test": "n test", "silhouette_n": "n sil."}


@dataclass
class StudySection:
    """One study as the report shows it."""

    name: str
    status: str
    table: pd.DataFrame
    targets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file in the report folder, caption)


def related(gdir: GridDir) -> list[StudyDir]:
    """Studies of the grid's store that score its runs or its datasets, those scoring its runs first."""
    store = RunStore(gdir.path.parent)
    try:
        datasets = set(gdir.config().datasets)
    except StoreError:
        datasets = set()
    mine, near = [], []
    for name in store.studies():
        sdir = store.study(name)
        try:
            cfg = sdir.config()
        except StoreError:
            continue
        uses_runs = any(e == f"grid:{gdir.name}" or e.startswith(f"run:{gdir.name}/") for e in cfg.extractors)
        if uses_runs:
            mine.append(sdir)
        elif datasets & set(cfg.datasets):
            near.append(sdir)
    return mine + near


def _caption(png: str) -> str:
    stem = png.removesuffix(".png")
    if stem.startswith(("pca_", "tsne_")):
        method, _, ds = stem.partition("_")
        return (f"{'PCA' if method == 'pca' else 't-SNE'} of every extractor's features on {ds}, coloured by class "
                "(the same seeded sample of test images in every panel; n in the figure).")
    if stem.startswith("before_after_"):
        return "The same backbone before (pretrained) and after fine-tuning: t-SNE side by side and every score."
    if stem.startswith("metrics_"):
        return "Every extractor's scores (best per column in bold; the seed's rows below on Fashion-MNIST)."
    return "Study figure."


def collect(report, sdir: StudyDir) -> StudySection:
    """Copy the study's figures and table into the report folder; return what the section shows."""
    from study import results

    st = sdir.status()
    frame = results.table(sdir)
    done = frame[frame["status"] == "done"] if len(frame) else frame
    line = f"{st.status}, {st.done}/{st.total} cells" + (f" ({st.error})" if st.error else "")
    section = StudySection(sdir.name, line, done, notes=list(st.notes))
    section.targets += [f"Best extractor against every row of the seed's table (full Fashion-MNIST): {c.line}."
                        for c in results.seed_targets(frame)]
    section.targets += [f"Fine-tuned against its own pretrained features: {c.line}."
                        for c in (results.finetune_targets(frame) if len(frame) else [])]
    csv_name = f"{PREFIX}{sdir.name}_metrics.csv"
    atomic_write(report.out / csv_name, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))
    report.add(report.out / csv_name, f"Study {sdir.name}: every dataset x extractor, every score and timing.",
               kind="table")
    for png in sdir.figures():
        name = f"{PREFIX}{sdir.name}_{png.name}"
        atomic_write_bytes(report.out / name, png.read_bytes())
        caption = f"Study {sdir.name}: {_caption(png.name)}"
        report.add(report.out / name, caption)
        section.figures.append((name, caption))
    return section


def markdown(sections: list[StudySection]) -> list[str]:
    """The report's "Feature-extractor study" section."""
    from report.index import fmt, fmt_int, md_table

    if not sections:
        return []
    lines = ["## Feature-extractor study", "",
             "How well each extractor's frozen features separate the classes without training a classifier: "
             "silhouette and Davies-Bouldin of the true classes and of the k-means clusters (silhouette on a "
             "seeded class-balanced sample, n given), ARI and NMI of k-means with k = the number of classes, and "
             "kNN and linear-probe accuracy (`finetune-tui study`).", ""]
    for s in sections:
        lines += [f"### Study `{s.name}` ({s.status})", ""]
        lines += [f"- {t}" for t in s.targets]
        lines += [f"- note: {n}" for n in s.notes]
        if s.targets or s.notes:
            lines.append("")
        for ds, rows in s.table.groupby("dataset", sort=False) if len(s.table) else []:
            cols = [c for c in TABLE if c in rows]
            lines += [f"**{ds}**", "", md_table(rows[cols].rename(columns=TABLE),
                                               {"dim": fmt_int, "img/s": lambda v: fmt(v, 0), "n test": fmt_int,
                                                "n sil.": fmt_int}), ""]
        for name, caption in s.figures:
            lines += [f"**[{name}]({name})**: {caption}", "", f"![{name}]({name})", ""]
    return lines


def steps(report, gdir: GridDir) -> list[tuple[str, object]]:
    """One report step per study that concerns the grid (each fills ``report.studies``)."""
    return [(f"{STEP} {sdir.name}", lambda sdir=sdir: report.studies.append(collect(report, sdir)))
            for sdir in related(gdir)]
