"""The report's feature-extractor study section: which studies join a grid's report, and what they bring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.config import DataConfig, GridConfig, ModelConfig, RunConfig, TrainConfig
from engine.store import RunStore
from study import figures

from .study_fixtures import cell_record, write_study

ROOT = Path(__file__).resolve().parents[1]


def grid_with_studies(root: Path):
    run = RunConfig(data=DataConfig(dataset="digits"), model=ModelConfig(backbone="test_efficientnet"),
                    train=TrainConfig(strategy="full"))
    gdir = RunStore(root).grid("g")
    gdir.path.mkdir(parents=True)
    gdir.write_info(GridConfig(name="g", datasets=("digits",), backbones=("test_efficientnet",),
                               strategies=("full",)), [run.run_id])
    uses = write_study(root, "uses-g")  # scores run:g/... (the fixture's default cells)
    figures.draw_dataset(uses, "digits")
    same_data = write_study(root, "same-data", [cell_record("digits", "small_cnn", "baseline",
                                                            {"silhouette": 0.2, "davies_bouldin": 1.6, "ari": 0.5,
                                                             "nmi": 0.6})])
    other = write_study(root, "other", [cell_record("mnist", "small_cnn", "baseline",
                                                    {"silhouette": 0.2, "davies_bouldin": 1.6, "ari": 0.5,
                                                     "nmi": 0.6})], datasets=("mnist",))
    return gdir, uses, same_data, other


def test_related_studies_those_scoring_the_grid_first(tmp_path):
    from report import study_section

    gdir, uses, same_data, _ = grid_with_studies(tmp_path)
    assert study_section.related(gdir) == [uses, same_data]


def test_report_has_the_study_section_with_its_figures(tmp_path):
    from report.api import build_report

    gdir, uses, _, _ = grid_with_studies(tmp_path)
    rep = build_report(gdir.path)
    assert not rep.failures, [f.line() for f in rep.failures]
    md = (gdir.report_dir / "report.md").read_text()
    section = md[md.index("## Feature-extractor study"):md.index("## Across datasets")]
    assert "### Study `uses-g` (done, 3/3 cells)" in section and "### Study `same-data`" in section
    assert "`other`" not in md
    assert "| run:g/digits__test_efficientnet__full | 64 | 0.310 | 1.100 | 0.400 | 1.000 | 0.600 | 0.700 |" in section
    assert ("Fine-tuned against its own pretrained features: met on digits (silhouette and Davies-Bouldin of the "
            "true classes): run:g/digits__test_efficientnet__full vs test_efficientnet@32 (4 of 4 better)") in section
    assert "not met on digits (silhouette and Davies-Bouldin of the k-means clusters)" in section
    for png in ("tsne_digits.png", "pca_digits.png", "metrics_digits.png",
                "before_after_digits__run-g-digits__test_efficientnet__full.png"):
        name = f"study_uses-g_{png}"
        assert (gdir.report_dir / name).read_bytes() == (uses.path / png).read_bytes()
        assert f"![{name}]({name})" in section
    assert (gdir.report_dir / "study_uses-g_metrics.csv").is_file()
    across = md[md.index("## Across datasets"):]
    assert "study_uses-g" not in across  # shown once, in its own section
    html = (gdir.report_dir / "report.html").read_text()
    assert "Feature-extractor study" in html and "data:image/png;base64" in html


def test_report_and_study_readers_import_without_torch():
    code = ("import sys, report.study_section, study.results, study.cli, tui.study_view, tui.screens.study\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
