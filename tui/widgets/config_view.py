"""The resolved config of a run, the weights it got and the data it saw."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.run_tail import RunDetail


def _flat(obj, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += _flat(v, f"{prefix}{k}." if not isinstance(v, dict) or v else f"{prefix}{k}")
        return out if obj else [(prefix.rstrip("."), "{}")]
    if isinstance(obj, list):
        return [(prefix.rstrip("."), ", ".join(str(x) for x in obj))]
    return [(prefix.rstrip("."), str(obj))]


def config_table(detail: RunDetail) -> Table | Text:
    if detail.problem:
        return Text(detail.problem)
    table = Table(box=None, padding=(0, 1), show_header=False, expand=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value")
    table.add_row("folder", str(detail.path))
    started = detail.started
    if started is not None:
        table.add_row(Text("weights", style="underline"), "")
        for k, v in _flat(started.weights):
            table.add_row(k, v)
        table.add_row(Text("data", style="underline"), "")
        for k, v in _flat(started.data):
            table.add_row(k, v)
        table.add_row(Text("machine", style="underline"), "")
        table.add_row("device", f"{started.device} ({started.device_name})")
        table.add_row("host / pid", f"{started.host} / {started.pid}")
        for k, v in _flat(started.versions):
            table.add_row(k, v)
        if started.params:
            table.add_row("parameters", ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in started.params.items()))
    if detail.config:
        for section, values in detail.config.items():
            table.add_row(Text(f"config [{section}]", style="underline"), "")
            for k, v in _flat(values):
                table.add_row(k, v)
    return table


class ConfigView(Static):
    """Config, weights, data and machine of the open run."""

    def show(self, detail: RunDetail) -> None:
        self.update(config_table(detail))

