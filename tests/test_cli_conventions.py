"""CLI conventions: --version, the run store from FINETUNE_TUI_RUNS or the settings file, the settings
command, shell completion, docs/CONFIG.md generated from engine/config.py, help that names real files,
the TUI's theme and keymap from the settings file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.settings import ENV_CONFIG, ENV_RUNS, SettingsError, load_settings
from engine.store import RunStore, default_root
from finetune_tui import __version__
from finetune_tui.cli import build_parser, main
from finetune_tui.config_doc import render

from .store_fixtures import add_to_grid, emit, finished_events, new_run

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *args], capture_output=True, text=True,
                          timeout=120, env=full, cwd=cwd)


def a_store(root: Path, grid: str = "g") -> Path:
    cfg = RunConfig()
    gdir = add_to_grid(root, grid, [cfg])
    emit(new_run(gdir, cfg), finished_events(cfg, [0.5, 0.6], [0.9, 0.8]))
    return root


def test_version():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"finetune-tui {__version__}"
    import tomllib

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["dynamic"] == ["version"]  # one source: finetune_tui.__version__


def test_the_run_store_comes_from_the_flag_then_the_variable_then_the_settings_file(tmp_path):
    env_store, file_store, flag_store = (a_store(tmp_path / n, n) for n in ("env", "file", "flag"))
    settings = tmp_path / "config.toml"
    settings.write_text(f'runs = "{file_store}"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {ENV_CONFIG: str(settings)}
    assert "grid file" in cli("runs", env=env, cwd=elsewhere).stdout
    assert "grid env" in cli("runs", env={**env, ENV_RUNS: str(env_store)}, cwd=elsewhere).stdout
    both = {**env, ENV_RUNS: str(env_store)}
    assert "grid flag" in cli("runs", "--runs", str(flag_store), env=both, cwd=elsewhere).stdout
    assert "grid flag" in cli("--runs", str(flag_store), "runs", env=both, cwd=elsewhere).stdout
    out = cli("settings", env=both, cwd=elsewhere).stdout
    assert f"settings file: {settings}\n" in out and f"run store: {env_store} ({ENV_RUNS})" in out


def test_default_root_without_settings_is_runs(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_CONFIG, str(tmp_path / "absent.toml"))
    monkeypatch.delenv(ENV_RUNS, raising=False)
    assert default_root() == Path("runs")
    monkeypatch.setenv(ENV_RUNS, "~/somewhere")
    assert default_root() == Path.home() / "somewhere"


def test_xdg_config_home_is_where_the_settings_file_lives(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_CONFIG)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "finetune-tui").mkdir()
    (tmp_path / "finetune-tui" / "config.toml").write_text('theme = "nord"\n[keymap]\n"app.help" = "h"\n')
    s = load_settings()
    assert (s.path, s.theme, s.keymap, s.exists) == (tmp_path / "finetune-tui" / "config.toml", "nord",
                                                     {"app.help": "h"}, True)


@pytest.mark.parametrize("text,message", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ("runs = 3\n", "runs must be a non-empty string"),
    ('[keymap]\n"app.quit" = 5\n', "[keymap] must map binding ids to key strings"),
    ("runs = \n", "can't be read (TOMLDecodeError"),
])
def test_a_bad_settings_file_is_one_line_naming_it(tmp_path, text, message):
    settings = tmp_path / "config.toml"
    settings.write_text(text)
    proc = cli("runs", env={ENV_CONFIG: str(settings)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"finetune-tui: error: settings file {settings}")
    assert message in lines[0]


@pytest.mark.parametrize("text,message", [
    ('theme = "nope"\n', "theme 'nope' is not a Textual theme; choose from "),
    ('[keymap]\n"app.nope" = "x"\n', "keymap: no key binding has the id 'app.nope'"),
])
def test_settings_refuses_what_the_tui_refuses(monkeypatch, capsys, tmp_path, text, message):
    # it listed "theme: nope" with exit status 0, where opening the TUI with the same file is an error
    settings = tmp_path / "config.toml"
    settings.write_text(text)
    monkeypatch.setenv(ENV_CONFIG, str(settings))
    assert main(["settings"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"finetune-tui: error: settings file {settings}: {message}")


def test_settings_lists_binding_ids_and_themes(monkeypatch, capsys):
    assert main(["settings", "--keys", "--themes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  app\.quit\s+q\s+Quit$", out, re.M)
    assert re.search(r"^  runs\.export\s+e\s+Export$", out, re.M)
    assert "nord" in out and "textual-dark" in out
    assert re.search(r"^  detail\.back\s+escape,backspace\s+Back$", out, re.M)  # the keys never run into the words


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts(shell, capsys):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("export", "predict", "sync", "tensorboard", "--embed-preprocess", "--runs"):
        assert word in script
    if shell == "bash" and shutil.which("bash"):
        check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr


def test_config_doc_is_generated_from_the_code():
    """Regenerate with `python -m finetune_tui.config_doc > docs/CONFIG.md` when this fails."""
    assert (REPO / "docs" / "CONFIG.md").read_text() == render()
    text = render()
    for key in ("train.partial_fraction", "data.image_size", "model.on_missing_weights", "concurrency"):
        assert f"| `{key}` |" in text
    assert "| `model.on_missing_weights` | string | `\"fail\"` | `fail`, `random` |" in text


def test_help_names_only_files_that_exist():
    parser = build_parser()
    texts = [parser.format_help()]
    for action in parser._subparsers._group_actions:
        texts += [sub.format_help() for sub in action.choices.values()]
    named = set(re.findall(r"\b((?:docs|engine|export|scripts)/[\w./-]+\.(?:md|py|sh))", "\n".join(texts)))
    assert "docs/CONFIG.md" in named
    for path in named:
        assert (REPO / path).is_file(), path


def test_readme_lists_the_exit_codes():
    readme = (REPO / "README.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in readme


async def test_the_tui_takes_theme_and_keymap_from_settings(tmp_path):
    from tests.tui_fixtures import make_app, store_finished, until
    from tui.screens.help import HelpScreen

    store_finished(tmp_path)
    app = make_app(tmp_path, theme="nord", keymap={"app.help": "f2"})
    async with app.run_test(size=(120, 36)) as pilot:
        assert app.theme == "nord"
        await pilot.pause(0.2)
        await pilot.press("question_mark")  # remapped: the old key does nothing now
        await pilot.pause(0.2)
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))


@pytest.mark.parametrize("kw,message", [({"theme": "neon"}, "theme 'neon' is not a Textual theme"),
                                        ({"keymap": {"app.hlep": "h"}}, "no key binding has the id 'app.hlep'")])
def test_the_tui_refuses_unknown_themes_and_binding_ids(tmp_path, kw, message):
    from tui.app import FinetuneApp

    with pytest.raises(SettingsError, match=re.escape(message)):
        FinetuneApp(RunStore(tmp_path).root, **kw)
