"""Plain-text formatting of run figures: one place decides how numbers look."""

from __future__ import annotations

import math

from engine.console import duration as console_duration

BLOCKS = "▁▂▃▄▅▆▇█"
MISSING = "–"


def pct(value: float | None, digits: int = 1) -> str:
    """0.8731 -> '87.3' (accuracies are shown as percentages without the sign)."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value * 100:.{digits}f}"


def num(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:.{digits}f}"


def sci(value: float | None) -> str:
    """Learning rates: 0.0001 -> '1e-04'."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:.0e}" if value else "0"


def rate(value: float | None) -> str:
    """Throughput in images per second: 1234.5 -> '1.2k'."""
    if value is None or not math.isfinite(value) or value <= 0:
        return MISSING
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def duration(seconds: float | None) -> str:
    """62 -> '1m02s', 3720 -> '1h02m' (the console's spelling); MISSING when unknown."""
    return console_duration(seconds) or MISSING


def ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def sparkline(values: list[float], width: int = 10) -> str:
    """The last ``width`` values as unicode blocks, scaled to their own min..max."""
    vals = [v for v in values[-width:] if v is not None and math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        return BLOCKS[len(BLOCKS) // 2] * len(vals)
    top = len(BLOCKS) - 1
    return "".join(BLOCKS[round((v - lo) / (hi - lo) * top)] for v in vals)


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (eighths for the tip)."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    tip = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + tip).ljust(width)


def epoch(done: int, total: int) -> str:
    if not total:
        return MISSING if not done else str(done)
    return f"{done}/{total}"


def one_line(text: str, width: int = 0) -> str:
    """First line of a message, cut to ``width`` with an ellipsis."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    if width and len(line) > width:
        return line[: max(width - 1, 0)] + "…"
    return line


# a failed run's kind (engine.errors.FAILURE_KINDS) in words
FAILURE_KINDS = {"user": "user error", "oom": "out of memory", "disk_full": "disk full", "killed": "killed",
                 "crash": "crash"}


def failure_kind(kind: str) -> str:
    """'disk_full' -> 'disk full'; an unknown kind (a newer engine's) as written, '' for none."""
    return FAILURE_KINDS.get(kind, (kind or "").replace("_", " "))


def failure(kind: str, error: str) -> str:
    """A failed run's reason led by its kind ('killed: worker stopped …'), once: a message that starts
    with it already ('disk full: 3 MB free on …') is left as it is."""
    label, line = failure_kind(kind), one_line(error)
    if not label or line.lower().startswith(label):
        return line
    return f"{label}: {line}" if line else label
