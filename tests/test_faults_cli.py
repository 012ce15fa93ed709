"""Fault suite, bad input at the command line (issue 15, items 5, 6 and 8): one line, exit 2, nothing touched.

Every case is typed as a user would; each asserts the exit code, that stderr is the one
"finetune-tui: error: ..." line with no traceback, and, where something could be harmed, that it wasn't.
No model is trained here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from engine.store import GridDir, RunStore
from finetune_tui.cli import main
from tests.store_fixtures import add_to_grid, emit, finished_events, new_run
from tui.actions import ActionError, StoreActions

ROOT = Path(__file__).resolve().parent.parent
GRID = """name = "t"
datasets = ["digits"]
backbones = ["test_efficientnet"]
strategies = ["frozen", "full"]
[model]
head = "linear"
weights = "random"
"""


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "finetune_tui.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd or ROOT)


def one_line(err: str) -> str:
    """The error line, after checking it is the only line and no traceback."""
    assert "Traceback" not in err and err.startswith("finetune-tui: error: ") and err.count("\n") == 1, err
    return err.strip()


def fails(capsys, *argv) -> str:
    """``finetune-tui ARGV`` in this process: exit 2 with one line; that line."""
    capsys.readouterr()
    assert main(list(argv)) == 2
    out = capsys.readouterr()
    return one_line(out.err)


# --- item 5: a folder, or a file that is not UTF-8, where the grid file goes -----------------------------


def test_grid_that_is_a_folder_or_not_utf8_is_one_line(tmp_path):
    r = cli("run", "--grid", str(tmp_path), "--runs", str(tmp_path / "runs"))
    assert r.returncode == 2
    assert one_line(r.stderr) == f"finetune-tui: error: grid file {tmp_path} is a folder; pass a TOML file"
    latin = tmp_path / "grid.toml"
    latin.write_bytes(GRID.encode() + "# Gr\xfc\xdfe aus M\xfcnchen\n".encode("latin-1"))
    r = cli("run", "--grid", str(latin), "--runs", str(tmp_path / "runs"))
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert line.startswith(f"finetune-tui: error: grid file {latin} is not UTF-8 text (byte ") and "UTF-8 TOML" in line
    assert not (tmp_path / "runs").exists()  # nothing was prepared


def test_bad_toml_is_one_line_naming_the_file_and_place(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GRID + "[train\nepochs = 2\n")
    line = fails(capsys, "run", "--grid", str(bad), "--runs", str(tmp_path / "runs"))
    assert f"grid file {bad}: invalid TOML" in line and "line 8" in line


# --- item 6: override names and --show-config --------------------------------------------------------------


def test_an_override_name_matching_nothing_is_an_error_naming_the_close_match(capsys, tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text(GRID + '[overrides.ful]\n"train.epochs" = 3\n')
    for extra in ([], ["--show-config"]):  # `run` and its dry run refuse it alike
        line = fails(capsys, "run", "--grid", str(typo), "--runs", str(tmp_path / "runs"), *extra)
        assert line == (f"finetune-tui: error: {typo} [overrides.ful]: 'ful' matches no dataset, backbone or "
                        "strategy of the grid; did you mean full?")
    assert not (tmp_path / "runs").exists()
    # a name the grid file listed, narrowed away on the command line, stays silent (and drops out)
    (tmp_path / "ok.toml").write_text(GRID + '[overrides.full]\n"train.epochs" = 3\n')
    capsys.readouterr()
    assert main(["run", "--grid", str(tmp_path / "ok.toml"), "--strategies", "frozen", "--show-config"]) == 0
    assert "overrides" not in capsys.readouterr().out
    # as does a preset's: demo has [overrides.partial] and [overrides.full]
    assert main(["run", "--preset", "demo", "--strategies", "frozen", "--show-config"]) == 0
    assert "[overrides" not in capsys.readouterr().out


def test_an_unknown_key_inside_an_override_names_the_file(capsys, tmp_path):
    f = tmp_path / "o.toml"
    f.write_text(GRID + '[overrides.full]\n"train.epochz" = 3\n')
    line = fails(capsys, "run", "--grid", str(f), "--show-config")
    assert line == f"finetune-tui: error: {f} [overrides.full] train.epochz: unknown key; did you mean train.epochs?"


def test_show_config_runs_the_checks_run_runs(capsys, tmp_path):
    line = fails(capsys, "run", "--preset", "demo", "--weights", str(tmp_path / "nope.safetensors"), "--show-config")
    assert line == (f"finetune-tui: error: weights file {tmp_path / 'nope.safetensors'} not found; pass an existing "
                    ".safetensors/.pth, 'pretrained' or 'random'")
    line = fails(capsys, "run", "--preset", "demo", "--backbones", "resnet5O", "--show-config")  # a letter O
    assert "resnet5O" in line and "resnet50" in line
    line = fails(capsys, "run", "--preset", "demo", "--datasets", "footware", "--show-config")
    assert "dataset 'footware' not found" in line and "did you mean 'footwear'" in line
    # data that isn't there yet: `run` stops, the dry run says so and still prints the grid
    capsys.readouterr()
    assert main(["run", "--preset", "demo", "--datasets", "transport", "--data-root", str(tmp_path),
                 "--show-config"]) == 0
    out = capsys.readouterr()
    assert out.err.startswith("finetune-tui: warning: dataset 'transport' needs CIFAR-10") and out.err.count("\n") == 1
    assert 'datasets = ["transport"]' in out.out
    line = fails(capsys, "run", "--preset", "demo", "--datasets", "transport", "--data-root", str(tmp_path),
                 "--runs", str(tmp_path / "runs"))
    assert "dataset 'transport' needs CIFAR-10" in line and not (tmp_path / "runs").exists()


def test_a_device_and_per_axis_weights_are_checked_before_anything_starts(capsys, tmp_path):
    # they were each run's failure (rc 1, run folders made), and cuda:9 was reported as cuda:0
    runs = str(tmp_path / "runs")
    line = fails(capsys, "run", "--preset", "demo", "--runs", runs, "--set", "train.device=tpu")
    assert line == "finetune-tui: error: train.device 'tpu' is not a device; use auto, cpu, cuda or cuda:N"
    import torch

    if not torch.cuda.is_available():
        line = fails(capsys, "run", "--preset", "demo", "--runs", runs, "--set", "train.device=cuda:9")
        assert line.startswith("finetune-tui: error: train.device 'cuda:9' asked for, but CUDA is not available")
    missing = tmp_path / "nope.safetensors"
    line = fails(capsys, "run", "--preset", "demo", "--runs", runs, "--axis", f"model.weights=random,{missing}")
    assert line.startswith(f"finetune-tui: error: weights file {missing} not found")
    assert fails(capsys, "run", "--preset", "demo", "--runs", runs, "--weights", str(tmp_path)) == (
        f"finetune-tui: error: model.weights {tmp_path} is a folder, not a weights file; pass 'pretrained', "
        "'random' or a .safetensors/.pth file")
    assert fails(capsys, "run", "--preset", "demo", "--runs", runs, "--set", "model.weights=").startswith(
        "finetune-tui: error: model.weights is empty; pass 'pretrained'")
    # files that can't hold weights, told from their first bytes (a random .pth was each run's "KeyError: 174812789")
    junk, foreign, cut = tmp_path / "junk.pth", tmp_path / "foreign.pth", tmp_path / "cut.safetensors"
    junk.write_bytes(bytes(range(7, 200)))
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    cut.write_bytes((10 ** 6).to_bytes(8, "little") + b'{"a": ')
    for path, why in ((junk, "is not a torch.save file (neither a zip archive nor a pickle stream)"),
                      (foreign, "is a zip archive but not one torch.save wrote (no data.pkl and version in it)"),
                      (cut, "is not a .safetensors file (its header is cut or damaged)")):
        assert fails(capsys, "run", "--preset", "demo", "--runs", runs, "--axis", f"model.weights=random,{path}") == (
            f"finetune-tui: error: weights file {path} {why}; pass a .safetensors file or a torch.save'd state dict "
            "(.pth), or 'pretrained' or 'random'")
    line = fails(capsys, "run", "--datasets", "digits,digits", "--backbones", "test_efficientnet", "--runs", runs)
    assert "has the run 'digits__test_efficientnet__frozen' twice" in line
    assert not (tmp_path / "runs").exists()


def test_lr_find_steps_and_stage_and_export_atol_out_of_range_are_one_line(capsys, tmp_path):
    base = ("lr-find", "--preset", "demo", "--strategies", "frozen", "--runs", str(tmp_path / "runs"))
    assert fails(capsys, *base, "--steps", "5") == (
        "finetune-tui: error: --steps 5: at least 10 (the default is train.lr_find_steps, 100)")
    assert fails(capsys, *base, "--steps", "0").startswith("finetune-tui: error: --steps 0: at least 10")
    assert fails(capsys, *base, "--stage", "7") == (
        "finetune-tui: error: --stage 7: footwear__efficientnet_lite0__frozen (frozen) has stages 0 to 0")
    assert "--stage -1:" in fails(capsys, *base, "--stage", "-1")
    assert fails(capsys, *base, "--out", str(tmp_path)) == (
        f"finetune-tui: error: --out {tmp_path} is a folder; give the PNG's file name, e.g. {tmp_path / 'lr.png'}")
    for atol in ("-1", "nan"):
        capsys.readouterr()
        assert main(["export", "--runs", str(tmp_path / "runs"), "demo", "--atol", atol]) == 2
        assert f"--atol must be a positive number (the default is 1e-3), got {float(atol)}" in capsys.readouterr().err


def test_unknown_backbone_and_missing_data_stop_run_before_anything_starts(tmp_path):
    r = cli("run", "--datasets", "digits", "--backbones", "no_such_net", "--runs", str(tmp_path / "runs"))
    assert r.returncode == 2 and "no_such_net" in one_line(r.stderr)
    r = cli("run", "--datasets", "people", "--backbones", "test_efficientnet", "--data-root", str(tmp_path / "d"),
            "--runs", str(tmp_path / "runs"))
    assert r.returncode == 2 and "dataset 'people' needs CIFAR-100" in one_line(r.stderr)
    assert not (tmp_path / "runs").exists()


# --- item 8: names and paths ------------------------------------------------------------------------------


def test_two_folders_that_would_share_a_run_id_are_one_line_naming_both(tmp_path):
    for name in ("shoes a", "shoes-a"):
        (tmp_path / name).mkdir()
    r = cli("run", "--datasets", f"imagefolder:{tmp_path / 'shoes a'},imagefolder:{tmp_path / 'shoes-a'}",
            "--backbones", "test_efficientnet", "--runs", str(tmp_path / "runs"))
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert f"'imagefolder:{tmp_path / 'shoes a'}' and 'imagefolder:{tmp_path / 'shoes-a'}'" in line
    assert "would both be named 'shoes-a'" in line and "imagefolder:NAME=PATH" in line
    assert "duplicate runs" not in line and not (tmp_path / "runs").exists()


def test_an_image_folder_that_is_a_file_says_so(tmp_path):
    f = tmp_path / "shoes.txt"
    f.write_text("not a folder\n")
    r = cli("run", "--datasets", f"imagefolder:{f}", "--backbones", "test_efficientnet", "--runs",
            str(tmp_path / "runs"))
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert f"{f} is a file, not a folder" in line and "doesn't exist" not in line
    assert not (tmp_path / "runs" / "demo").exists()


# --- item 8: a grid name never leaves the store ---------------------------------------------------------


@pytest.fixture
def two_stores(tmp_path):
    """``store/`` (where --runs points) and ``other/g``, a finished grid next to it, outside the store."""
    cfg = RunConfig(data=DataConfig(dataset="digits"), model=ModelConfig(backbone="test_efficientnet"),
                    train=TrainConfig(epochs=2))
    for root in (tmp_path / "store", tmp_path / "other"):
        gdir = add_to_grid(root, "g", [cfg])
        emit(new_run(gdir, cfg), finished_events(cfg, [0.5, 0.6], [1.0, 0.9]))
    return tmp_path


def untouched(gdir: GridDir) -> None:
    assert not gdir.cancel_file.exists() and not gdir.exports_csv.exists() and not gdir.report_dir.exists()
    assert not any(rd.cancel_file.exists() for rd in gdir.run_dirs()) and not gdir.orchestrator_log.exists()


@pytest.mark.parametrize("argv", [
    ["resume", "../other/g"],
    ["cancel", "../other/g"],
    ["cancel", "g", "../../other/g/digits__test_efficientnet__frozen"],
    ["runs", "--grid", "../other/g"],
    ["export", "../other/g", "--no-bench"],
    ["report", "../other/g"],
])
def test_commands_refuse_grid_names_that_leave_the_store(two_stores, capsys, monkeypatch, argv):
    """STORE/../other/g is a grid, but not one of STORE's. (export and report also take a grid folder's path,
    from the current folder: from here ../other/g is no folder, so only the store could lead there.)"""
    (two_stores / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(two_stores / "a" / "b")
    capsys.readouterr()
    code = main([argv[0], *argv[1:], "--runs", str(two_stores / "store")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1 and "../other/g" in err
    untouched(GridDir(two_stores / "other" / "g"))
    untouched(GridDir(two_stores / "store" / "g"))


def test_tui_actions_refuse_grid_names_that_leave_the_store(two_stores):
    actions = StoreActions(two_stores / "store")
    for act in (actions.cancel_grid, actions.export_grid, actions.report_grid, actions.resume_grid):
        with pytest.raises(ActionError, match="must be a name in the run store, not a path"):
            act("../other/g")
    untouched(GridDir(two_stores / "other" / "g"))
    assert RunStore(two_stores / "store").grids() == ["g"]


def test_a_run_store_that_is_a_file_is_one_line_not_an_empty_store(capsys, tmp_path):
    store = tmp_path / "h.sh"
    store.write_text("#!/bin/sh\n")
    for argv in (["runs"], ["runs", "--format", "json"], ["study", "list"]):
        assert fails(capsys, *argv, "--runs", str(store)) == (
            f"finetune-tui: error: run store {store} is a file, not a folder; pass --runs a folder")
