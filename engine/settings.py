"""The user's settings file: default run store, TUI theme and key bindings.

``$XDG_CONFIG_HOME/finetune-tui/config.toml`` (``~/.config/finetune-tui/config.toml`` when
XDG_CONFIG_HOME is unset; ``FINETUNE_TUI_CONFIG`` names another file)::

    runs = "~/experiments/runs"   # the default run store (--runs and FINETUNE_TUI_RUNS beat it)
    theme = "gruvbox"             # a Textual theme (`finetune-tui settings --themes` lists them)
    [keymap]                      # binding id = key(s), comma-separated (`finetune-tui settings --keys`)
    "app.quit" = "ctrl+q"
    "runs.export" = "E"

A missing file means no settings; an unreadable one, an unknown key or a value of the wrong
type is a ``SettingsError`` naming the file. ``engine.store.default_root`` reads ``runs`` here;
the TUI applies ``theme`` and ``keymap`` (Textual's ``App.set_keymap``). Torch-free.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError

ENV_RUNS = "FINETUNE_TUI_RUNS"  # the run store, beating the settings file
ENV_CONFIG = "FINETUNE_TUI_CONFIG"  # another settings file
APP_DIR = "finetune-tui"
FILE_NAME = "config.toml"
KEYS = ("runs", "theme", "keymap")


class SettingsError(UserError):
    """The settings file can't be read or holds something it shouldn't; the message names the file."""


@dataclass(frozen=True)
class Settings:
    path: Path
    runs: str | None = None
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)
    exists: bool = False


def config_dir() -> Path:
    """The XDG config folder of finetune-tui (XDG_CONFIG_HOME, else ~/.config)."""
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base).expanduser() if base.strip() and Path(base).is_absolute() else Path.home() / ".config"
    return root / APP_DIR


def settings_path() -> Path:
    env = os.environ.get(ENV_CONFIG, "").strip()
    return Path(env).expanduser() if env else config_dir() / FILE_NAME


def load_settings(path: str | Path | None = None) -> Settings:
    path = Path(path) if path is not None else settings_path()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return Settings(path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"settings file {path} can't be read ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise SettingsError(f"settings file {path}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    for name in ("runs", "theme"):
        if name in data and (not isinstance(data[name], str) or not data[name].strip()):
            raise SettingsError(f"settings file {path}: {name} must be a non-empty string, got {data[name]!r}")
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                               for k, v in keymap.items()):
        raise SettingsError(f"settings file {path}: [keymap] must map binding ids to key strings, "
                            f'e.g. "app.quit" = "ctrl+q"')
    return Settings(path, runs=data.get("runs"), theme=data.get("theme"), keymap=dict(keymap), exists=True)


def runs_from_settings() -> tuple[Path | None, str]:
    """The default run store from the environment or the settings file, and where it came from."""
    env = os.environ.get(ENV_RUNS, "").strip()
    if env:
        return Path(env).expanduser(), ENV_RUNS
    settings = load_settings()
    if settings.runs:
        return Path(settings.runs).expanduser(), f"{settings.path} (runs)"
    return None, ""
