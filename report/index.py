"""report.md and report.html: the experiment's conclusions, with links to (and, in HTML, inline) every figure."""

from __future__ import annotations

import base64
import html
import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from engine.store import BEST_RULE
from report import tables
from report.reference import REFERENCE, REFERENCE_IMAGE_SIZE, is_known_confusion, reference, why_no_reference

MARKDOWN = "report.md"
HTML = "report.html"


# --- small formatting helpers ---------------------------------------------------


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_int(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return str(int(value)) if math.isfinite(value) else "–"


def signed(value: float, digits: int = 3) -> str:
    return "–" if not np.isfinite(value) else f"{value:+.{digits}f}"


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, formats: dict[str, callable] | None = None) -> str:
    """A GitHub-style markdown table (pandas' to_markdown needs tabulate, which the project doesn't ship)."""
    formats = formats or {}
    head = "| " + " | ".join(md_escape(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(md_escape(formats.get(c, fmt)(v)) for c, v in row.items()) + " |"
            for _, row in df.iterrows()]
    return "\n".join([head, rule, *body])


def link(name: str) -> str:
    return f"[{name}]({name})"


# --- the document ------------------------------------------------------------------


def conclusions(report, dataset: str) -> list[str]:
    """Bullet points for one dataset: best model, strategy per backbone, reference, confusions, calibration."""
    t = report.table
    rows = t[t["dataset"] == dataset]
    done = rows[rows["status"] == "done"]
    out: list[str] = []
    if done.empty:
        return [f"No finished run on {dataset} yet ({len(rows)} run(s): "
                + ", ".join(sorted(set(rows["status"]))) + ")."]
    best = tables.select_best(done, by=("dataset",)).iloc[0]
    line = (f"**Best model: {best['backbone']} / {best['strategy']}**: test accuracy {fmt(best['accuracy'])}, "
            f"macro F1 {fmt(best['f1_macro'])} (chosen by the selection rule: validation accuracy "
            f"{fmt(best['val_acc'])} at its kept epoch {fmt_int(best['best_epoch'])}, validation loss "
            f"{fmt(best['val_loss'])}, among {len(done)} finished run(s); the test set played no part in the choice).")
    top_test = done.sort_values("accuracy", ascending=False).iloc[0]
    if top_test["run_id"] != best["run_id"]:
        line += (f" The highest test accuracy is {top_test['backbone']} / {top_test['strategy']} at "
                 f"{fmt(top_test['accuracy'])}.")
    out.append(line)
    if dataset not in REFERENCE:
        out.append(f"No seed reference for {dataset}: {why_no_reference(dataset, '')}.")
    for backbone in dict.fromkeys(done["backbone"]):
        b = done[done["backbone"] == backbone].sort_values("accuracy", ascending=False)
        picked = report.best[(report.best["dataset"] == dataset) & (report.best["backbone"] == backbone)]
        chosen = picked.iloc[0]["strategy"] if len(picked) else b.iloc[0]["strategy"]
        scores = ", ".join(f"{s} {fmt(a)}" for s, a in zip(b["strategy"], b["accuracy"]))
        ref = reference(dataset, backbone)
        chosen_row = b[b["strategy"] == chosen].iloc[0]
        if ref:
            size = chosen_row["image_size"]
            ref_text = (f"seed reference {ref[0]:.2f} accuracy / {ref[1]:.2f} F1 at {REFERENCE_IMAGE_SIZE} px: "
                        f"{signed(chosen_row['accuracy'] - ref[0], 2)} accuracy, "
                        f"{signed(chosen_row['f1_macro'] - ref[1], 2)} F1"
                        + (f" (this run at {fmt(size)} px)" if np.isfinite(size) else ""))
        elif dataset in REFERENCE:
            ref_text = f"no seed reference: {why_no_reference(dataset, backbone)}"
        else:
            ref_text = ""
        out.append(f"{backbone}: **{chosen}** is the strategy kept (test accuracy by strategy: {scores})"
                   + (f"; {ref_text}." if ref_text else "."))
    moves = tables.layer_movement_table([r for r in report.grid.runs_for(dataset) if r.done])
    if len(moves):
        parts = []
        for strategy, m in moves.groupby("strategy", sort=False):
            counts = ", ".join(f"{b} {int(k)}/{int(n)}" for b, k, n in
                               zip(m["backbone"], m["groups_moved"], m["backbone_groups"]))
            text = f"{strategy}: backbone groups whose norm changed {counts}"
            if m["groups_moved"].max() > 0:
                top = m.loc[m["most_moved_pct"].abs().idxmax()]
                text += f" (largest: {top['most_moved_group']} {top['most_moved_pct']:+.3g}% in {top['backbone']})"
            lo, hi = m["head_change_pct"].min(), m["head_change_pct"].max()
            text += f", head {lo:+.3g}%" + (f" to {hi:+.3g}%" if len(m) > 1 and hi != lo else "")
            parts.append(text)
        out.append("Which layers learn (change of each group's L2 weight norm since before training; a norm can "
                   "stay put while weights rotate, so small numbers are a lower bound): " + "; ".join(parts) + ".")
    limited = done[(pd.to_numeric(done["best_epoch"], errors="coerce") == pd.to_numeric(done["epochs_run"],
                                                                                          errors="coerce"))
                   & (pd.to_numeric(done["epochs_run"], errors="coerce") >= pd.to_numeric(done["max_epochs"],
                                                                                           errors="coerce"))]
    if len(limited):
        names = ", ".join(f"{b} / {s}" for b, s in zip(limited["backbone"], limited["strategy"]))
        out.append(f"Still improving at the epoch limit (kept epoch = last epoch, no early stop): {names}; "
                   f"more epochs would likely help {'it' if len(limited) == 1 else 'them'}.")
    pairs = report.pairs.get(dataset)
    if pairs is not None and len(pairs):
        parts = []
        for _, p in pairs.head(3).iterrows():
            known = " (a confusion the seed also names)" if is_known_confusion(dataset, p["class_a"],
                                                                               p["class_b"]) else ""
            shared = (f", the top pair of {p['top_pair_in_models']} of {p['models']} models"
                      if p["models"] > 1 and p["top_pair_in_models"] else "")
            parts.append(f"{p['class_a']} ↔ {p['class_b']}: {p['errors']} errors "
                         f"({p['a_as_b']} {p['class_a']}→{p['class_b']}, {p['b_as_a']} {p['class_b']}→{p['class_a']}), "
                         f"{p['share_of_errors'] * 100:.0f}% of all errors{shared}{known}")
        out.append("Typical confusions (summed over all models): " + "; ".join(parts) + ".")
    elif pairs is not None:
        out.append("No confusions: every finished model classified the test set perfectly.")
    ece = done.dropna(subset=["ece"])
    if len(ece):
        lo, hi = ece.loc[ece["ece"].idxmin()], ece.loc[ece["ece"].idxmax()]
        text = f"{lo['ece'] * 100:.1f}% ({lo['backbone']} / {lo['strategy']})"
        if len(ece) > 1:
            text = f"from {text} to {hi['ece'] * 100:.1f}% ({hi['backbone']} / {hi['strategy']})"
        gap = (ece["mean_confidence"] - ece["accuracy"]).mean() if "mean_confidence" in ece else np.nan
        side = "" if not np.isfinite(gap) else (" Models are over-confident on average (mean confidence above "
                                                 "accuracy)." if gap > 0.005 else " Models are under-confident "
                                                 "on average." if gap < -0.005 else "")
        out.append(f"Calibration: ECE {text}.{side}")
    fast = done.dropna(subset=["train_seconds"])
    if len(fast):
        f = fast.loc[fast["train_seconds"].idxmin()]
        s = fast.loc[fast["train_seconds"].idxmax()]
        span = f"{f['train_seconds']:.0f} s ({f['backbone']} / {f['strategy']})"
        if len(fast) > 1:
            span = f"{span} to {s['train_seconds']:.0f} s ({s['backbone']} / {s['strategy']})"
        epochs = pd.to_numeric(done["epochs_run"], errors="coerce")
        stopped = int(done["early_stopped"].fillna(False).astype(bool).sum())
        out.append(f"Training time: {span}; epochs run {fmt_int(epochs.min())}"
                   + (f"-{fmt_int(epochs.max())}" if epochs.max() != epochs.min() else "")
                   + f"; {stopped} of {len(done)} stopped early.")
    lat = done.dropna(subset=["onnx_p50_ms_batch1"])
    if len(lat):
        q = lat.loc[lat["onnx_p50_ms_batch1"].idxmin()]
        out.append(f"Fastest ONNX model: {q['backbone']} / {q['strategy']} at {q['onnx_p50_ms_batch1']:.2f} ms "
                   f"(p50, batch 1, {q['onnx_provider']}), accuracy {fmt(q['accuracy'])}.")
    return out


def overall(report) -> list[str]:
    """Grid-wide lines: which strategy wins how many dataset x backbone cells, and the reference scorecard."""
    best = report.best
    if best.empty:
        return []
    wins = best["strategy"].value_counts()
    cells = len(best)
    lines = ["- Strategy kept per dataset x backbone (by the selection rule): "
             + ", ".join(f"**{s}** in {n} of {cells}" for s, n in wins.items()) + "."]
    d = report.deltas if report.deltas is not None else tables.reference_deltas(best)
    with_ref = d.dropna(subset=["reference_accuracy"])
    if len(with_ref):
        beat = int((with_ref["accuracy_delta"] >= 0).sum())
        lines.append(f"- Against the seed's table: {beat} of {len(with_ref)} comparable cells match or beat it "
                     f"(accuracy difference {with_ref['accuracy_delta'].min():+.3f} to "
                     f"{with_ref['accuracy_delta'].max():+.3f}).")
    if len(with_ref) < len(d):
        lines.append(f"- {len(d) - len(with_ref)} of {len(d)} cells have no seed reference (dataset or backbone "
                     f"not in the seed's experiment).")
    return lines + [""]


RUN_TABLE = {"backbone": "backbone", "strategy": "strategy", "status": "status", "accuracy": "acc",
             "f1_macro": "F1", "precision_macro": "precision", "recall_macro": "recall", "ece": "ECE",
             "val_acc": "val acc", "best_epoch": "best ep.", "epochs_run": "epochs", "train_seconds": "train s",
             "onnx_p50_ms_batch1": "ONNX ms"}


def run_table_md(rows: pd.DataFrame) -> str:
    df = rows[list(RUN_TABLE)].rename(columns=RUN_TABLE)
    return md_table(df, {"train s": lambda v: fmt(v, 0), "ONNX ms": lambda v: fmt(v, 2), "best ep.": fmt_int,
                         "epochs": fmt_int})


def render_markdown(report) -> str:
    grid = report.grid
    t = report.table
    counts = t["status"].value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items())
    devices = sorted({f"{r.device} ({r.device_name})" if r.device_name else r.device for r in grid.runs if r.device})
    versions = next((r.versions for r in grid.runs if r.versions), {})
    lines = [f"# Report: grid `{grid.name}`", ""]
    lines.append(f"Made {time.strftime('%Y-%m-%d %H:%M')} from `{grid.path}` in {report.seconds:.1f} s. "
                 f"{len(t)} run(s): {status}.")
    if report.grid_running:
        lines.append("**The grid is still running: this report is a snapshot.**")
    if devices:
        lines.append(f"Device: {', '.join(devices)}"
                     + (f"; versions: {', '.join(f'{k} {v}' for k, v in versions.items())}" if versions else "")
                     + ".")
    stale = [a.name for a in report.artifacts if a.stale]
    if report.failures:
        lines.append(f"**{len(report.failures)} step(s) of this report failed** (listed under Gaps)"
                     + (f"; the earlier {', '.join(stale)} {'is' if len(stale) == 1 else 'are'} shown, marked "
                        f"stale." if stale else "."))
    lines += ["", f"**Selection rule**: {BEST_RULE}. It picks the best model per dataset (and the "
                  "strategy kept per dataset and backbone) here and in `finetune-tui export --select`; the test set "
                  "plays no part in choosing, and test numbers are reported for the chosen runs. The seed's "
                  f"reference numbers (SPEC.md) were measured at {REFERENCE_IMAGE_SIZE}x{REFERENCE_IMAGE_SIZE} px "
                  "on a GPU.", ""]

    datasets = list(dict.fromkeys(a.dataset for a in report.artifacts if a.dataset)) or grid.datasets
    datasets = [d for d in grid.datasets if d in datasets] + [d for d in datasets if d not in grid.datasets]
    lines += ["## Conclusions", ""]
    lines += overall(report)
    for ds in datasets:
        lines.append(f"### {ds}")
        lines += [f"- {c}" for c in conclusions(report, ds)]
        lines.append("")
    if report.deltas is not None and len(report.deltas):
        lines += ["### Against the seed's reference table", ""]
        d = report.deltas.rename(columns={"reference_accuracy": "seed acc", "accuracy_delta": "Δ acc",
                                          "reference_f1": "seed F1", "f1_delta": "Δ F1", "f1_macro": "F1",
                                          "image_size": "px"})
        lines.append(md_table(d, {"Δ acc": signed, "Δ F1": signed, "seed acc": lambda v: fmt(v, 2),
                                  "seed F1": lambda v: fmt(v, 2), "px": fmt_int}))
        lines += ["", "– = the seed had no such dataset or backbone.", ""]

    lines += ["## Gaps", ""]
    if report.gaps:
        lines += [f"- {' '.join(str(g).split())}" for g in report.gaps]
    else:
        lines.append("None: every run finished and every figure was made.")
    lines.append("")

    for ds in datasets:
        lines += [f"## {ds}", "", run_table_md(t[t["dataset"] == ds]), ""]
        pairs = report.pairs.get(ds)
        if pairs is not None and len(pairs):
            lines += ["Most confused class pairs (all models summed):", "",
                      md_table(pairs.head(6)[["class_a", "class_b", "a_as_b", "b_as_a", "errors", "pair_error_rate",
                                              "share_of_errors", "top_pair_in_models"]]), ""]
        moves = tables.layer_movement_table([r for r in grid.runs_for(ds) if r.done])
        if len(moves):
            lines += ["Layer groups trained (L2 norm change since before training, last epoch):", "",
                      md_table(moves.drop(columns=["head_group"]),
                               {"head_change_pct": lambda v: f"{v:+.2f}%", "most_moved_pct": lambda v: f"{v:+.3f}%",
                                "backbone_groups": fmt_int, "groups_moved": fmt_int}), ""]
        for a in [a for a in report.artifacts if a.dataset == ds]:
            lines += _artifact_md(a)
    from report import study_section

    lines += study_section.markdown(getattr(report, "studies", []))
    lines += ["## Across datasets", ""]
    for a in [a for a in report.artifacts if not a.dataset and not a.step.startswith(study_section.STEP)]:
        lines += _artifact_md(a)
    return "\n".join(lines) + "\n"


def _artifact_md(a) -> list[str]:
    caption = f"**STALE** ({a.stale}; its step failed this time, see Gaps): {a.caption}" if a.stale else a.caption
    if a.kind == "figure":
        return [f"**{link(a.name)}**: {caption}", "", f"![{a.name}]({a.name})", ""]
    return [f"- table {link(a.name)}: {caption}", ""]


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def render_html(markdown: str, folder: Path, title: str) -> str:
    """The markdown as HTML (markdown-it, as rich uses), every local PNG inlined as a data URI."""
    try:
        from markdown_it import MarkdownIt

        body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)  # text stays text
    except ImportError:  # pragma: no cover - markdown-it comes with rich
        body = f"<pre>{html.escape(markdown)}</pre>"

    def inline(match: re.Match) -> str:
        path = folder / html.unescape(match.group(1))
        if path.suffix.lower() != ".png" or not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^":]+)"', inline, body)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n")


def write(report) -> tuple[Path, Path]:
    from engine.store import atomic_write_text

    md = render_markdown(report)
    md_path, html_path = report.out / MARKDOWN, report.out / HTML
    atomic_write_text(md_path, md)
    atomic_write_text(html_path, render_html(md, report.out, f"Report: {report.grid.name}"))
    return md_path, html_path
