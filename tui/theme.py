"""Rich styles taken from the running Textual theme, for cells that Rich renders (tables, plots)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style

STATUS_COLOUR = {
    "running": "accent",
    "queued": "muted",
    "done": "success",
    "failed": "error",
    "cancelled": "warning",
    "unreadable": "error",
}


@dataclass(frozen=True)
class Palette:
    """Theme colours as Rich styles; ``plain`` drops every colour (NO_COLOR)."""

    success: Style = Style(color="green")
    error: Style = Style(color="red")
    warning: Style = Style(color="yellow")
    accent: Style = Style(color="cyan")
    primary: Style = Style(color="blue")
    muted: Style = Style(dim=True)
    plain: bool = False
    colours: tuple[str, ...] = ("green", "red", "yellow", "cyan", "blue")

    @classmethod
    def from_app(cls, app) -> "Palette":
        """The palette of ``app``'s current theme (or a colourless one under NO_COLOR)."""
        if getattr(app, "no_color", False):
            bold = Style(bold=True)
            return cls(success=bold, error=bold, warning=Style(italic=True), accent=Style(), primary=Style(),
                       muted=Style(dim=True), plain=True, colours=("default",))
        v = app.theme_variables
        names = ("success", "error", "warning", "accent", "primary")
        return cls(
            **{n: Style(color=v[n]) for n in names},
            muted=Style(color=v.get("foreground-darken-2", v.get("foreground")), dim=False),
            colours=tuple(v[n] for n in ("primary", "accent", "success", "warning", "error", "secondary")),
        )

    def status(self, status: str) -> Style:
        return getattr(self, STATUS_COLOUR.get(status, "muted"))

    def best(self) -> Style:
        """The highlight of the best value in a row of a comparison."""
        return self.success + Style(bold=True, underline=True)
