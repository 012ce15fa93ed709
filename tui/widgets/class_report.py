"""Test metrics of a finished run: overall figures and the per-class report."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui import format as fmt
from tui.theme import Palette


def class_report(results: dict, palette: Palette, export: dict | None = None) -> Group:
    overall = Text()
    overall.append("test ", style="bold")
    overall.append(f"accuracy {fmt.pct(results.get('accuracy'))}%  F1 macro {fmt.pct(results.get('f1_macro'))}%  "
                   f"weighted {fmt.pct(results.get('f1_weighted'))}%  n={results.get('n_test', '?')}")
    overall.append(f"\nbest epoch {results.get('best_epoch', '?')} of {results.get('epochs_run', '?')}"
                   + (" (early stop)" if results.get("early_stopped") else "")
                   + f", {fmt.duration(results.get('train_seconds'))} training on {results.get('device', '?')}")
    if export:
        overall.append("\nONNX ", style="bold")
        overall.append(onnx_line(export), style=palette.success if export.get("status") == "ok" else palette.warning)
    table = Table(box=None, padding=(0, 1), title="per class", title_justify="left")
    table.add_column("class", no_wrap=True)
    for name in ("precision", "recall", "F1", "support"):
        table.add_column(name, justify="right")
    per_class = results.get("per_class") or {}
    worst = min(per_class, key=lambda c: per_class[c].get("f1-score", 1.0), default=None)
    for name, row in per_class.items():
        style = palette.warning if name == worst and len(per_class) > 1 else ""
        table.add_row(Text(name, style=style), fmt.pct(row.get("precision")), fmt.pct(row.get("recall")),
                      Text(fmt.pct(row.get("f1-score")), style=style), _count(row.get("support")))
    return Group(overall, Text(""), table)


def _count(value) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else ""


def onnx_line(export: dict) -> str:
    if export.get("status") != "ok":
        return f"{export.get('status', '?')}: {fmt.one_line(str(export.get('error', '')))}"
    parts = [f"accuracy {fmt.pct(export.get('onnx_accuracy'))}%"]
    cpu = (export.get("latency") or {}).get("CPUExecutionProvider") or {}
    b1 = cpu.get("1") or {}
    if b1:
        parts.append(f"CPU batch 1 p50 {fmt.ms(b1.get('p50_ms'))} ms")
    if export.get("size_mb") is not None:
        parts.append(f"{export['size_mb']:.1f} MB")
    return ", ".join(parts)


class ClassReport(Static):
    """Overall and per-class test metrics."""

    def show(self, results: dict, palette: Palette, export: dict | None = None) -> None:
        self.update(class_report(results, palette, export))
