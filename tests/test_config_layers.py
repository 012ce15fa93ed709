"""One config path: preset/file, --set and flags merged once; command line beats the file's overrides too."""

import json
import tomllib

import pytest

from engine import toml_writer
from engine.config import ConfigError, GridConfig, RunConfig, apply_settings, load_grid_file
from engine.presets import get_preset
from finetune_tui.cli import build_parser, main, resolve_grid


def grid_of(*argv):
    return resolve_grid(build_parser().parse_args(["run", *argv]))


def epochs_by_run(grid):
    return {r.run_id: r.train.epochs for r in grid.runs()}


OVERRIDES_TOML = """
name = "ov"
datasets = ["digits", "imagefolder:/data/my \\"pets\\""]
backbones = ["test_efficientnet", "resnet50.a1_in1k"]
strategies = ["frozen", "partial", "full"]
concurrency = 2
[data]
image_size = 48
data_root = 'C:\\data\\x'
[train]
epochs = 10
lr = 3e-4
min_lr = 1e-6
label_smoothing = 0.1
[overrides.full]
"train.epochs" = 2
"data.train_limit" = 500
[overrides.partial]
train = { epochs = 3, partial_fraction = 0.5 }
[overrides."resnet50.a1_in1k"]
model = { head = "linear" }
[overrides."imagefolder:/data/my \\"pets\\""]
"data.augment" = true
"""


@pytest.fixture
def ov_file(tmp_path):
    f = tmp_path / "ov.toml"
    f.write_text(OVERRIDES_TOML)
    return f


def test_command_line_epochs_beat_the_presets_per_name_overrides():
    # issue 14.1: the demo's [overrides.partial]/[overrides.full] used to win over --epochs
    grid = grid_of("--preset", "demo", "--epochs", "5")
    assert set(epochs_by_run(grid).values()) == {5} and len(grid.runs()) == 4
    # the overrides' other keys still apply
    limits = {r.train.strategy: r.data.train_limit for r in grid.runs()}
    assert limits == {"frozen": 0, "partial": 3000, "full": 1000, "two_stage": 2000}
    # without the flag the overrides hold
    plain = {r.train.strategy: r.train.epochs for r in grid_of("--preset", "demo").runs()}
    assert plain == {"frozen": 10, "partial": 3, "full": 3, "two_stage": 4}


def test_precedence_flags_over_set_over_file_overrides_over_file(ov_file):
    runs = {r.run_id: r for r in grid_of("--grid", str(ov_file)).runs()}
    assert runs["digits__test_efficientnet__frozen"].train.epochs == 10
    assert runs["digits__test_efficientnet__partial"].train.epochs == 3
    assert runs["digits__test_efficientnet__partial"].train.partial_fraction == 0.5
    assert runs["digits__test_efficientnet__full"].train.epochs == 2
    grid = grid_of("--grid", str(ov_file), "--set", "train.epochs=4", "--set", "data.train_limit=50")
    assert set(epochs_by_run(grid).values()) == {4}
    assert {r.data.train_limit for r in grid.runs()} == {50}
    assert {r.train.partial_fraction for r in grid.runs() if r.train.strategy == "partial"} == {0.5}
    # an explicit flag beats --set for the same key
    grid = grid_of("--grid", str(ov_file), "--set", "train.epochs=4", "--epochs", "6")
    assert set(epochs_by_run(grid).values()) == {6}
    # keys the command line does not touch keep the file's per-name values
    heads = {r.model.backbone: r.model.head for r in grid.runs()}
    assert heads == {"test_efficientnet": "seed", "resnet50.a1_in1k": "linear"}


def test_precedence_survives_grid_json():
    grid = grid_of("--preset", "demo", "--epochs", "5")
    stored = json.loads(json.dumps({"config": grid.to_dict()}))  # what prepare() writes
    again = GridConfig.from_dict(stored["config"], "grid.json")
    assert again == grid
    assert set(epochs_by_run(again).values()) == {5}
    # grid.json keeps today's keys, the axes and search of issue 10 and the executor keys of issue 12
    assert set(stored["config"]) == {"name", "datasets", "backbones", "strategies", "concurrency", "base", "overrides",
                                     "axes", "search", "executor", "ray_address", "ray_store", "retries"}


def _show_config(capsys, *argv):
    capsys.readouterr()
    assert main(["run", *argv, "--show-config"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--preset", "demo"],
    ["--preset", "seed"],
    ["--preset", "demo", "--epochs", "5", "--set", "train.lr=2.5e-4", "--name", "d5"],
    ["--grid", "OVERRIDES"],
    ["--grid", "OVERRIDES", "--set", "data.train_limit=7", "--head", "linear", "--strategies", "gradual,full"],
])
def test_show_config_is_toml_that_reads_back_to_the_same_grid(capsys, tmp_path, ov_file, argv):
    argv = [str(ov_file) if a == "OVERRIDES" else a for a in argv]
    text = _show_config(capsys, *argv)
    tomllib.loads(text)  # TOML, not JSON
    assert not text.lstrip().startswith("{")
    f = tmp_path / "shown.toml"
    f.write_text(text)
    expected = grid_of(*argv)
    assert load_grid_file(f) == expected
    assert [r.to_dict() for r in load_grid_file(f).runs()] == [r.to_dict() for r in expected.runs()]
    # and showing the file again prints the same text
    assert _show_config(capsys, "--grid", str(f)) == text


def test_show_config_of_demo_with_epochs(capsys):
    doc = tomllib.loads(_show_config(capsys, "--preset", "demo", "--epochs", "5"))
    assert doc["train"]["epochs"] == 5 and doc["data"]["image_size"] == 64
    assert doc["overrides"] == {"partial": {"train.lr": 3e-4, "data.train_limit": 3000},
                                "full": {"train.lr": 3e-4, "data.train_limit": 1000},
                                "two_stage": {"train.head_epochs": 2, "data.train_limit": 2000}}
    # one source for the image size, and no keys the grid's lists set
    assert "image_size" not in doc["train"] and "image_size" not in doc["model"]
    assert "dataset" not in doc["data"] and "backbone" not in doc["model"] and "strategy" not in doc["train"]


# grid.json as the landed code wrote it (engine/config.py before the one-parser rewrite), nested
# override tables kept as the TOML gave them, base with the placeholder dataset/backbone/strategy
OLD_GRID_JSON = {
    "name": "o", "datasets": ["digits"], "backbones": ["test_efficientnet", "test_resnet"],
    "strategies": ["frozen", "full"], "concurrency": 0,
    "base": {
        "data": {"dataset": "footwear", "data_root": "data", "download": False, "image_size": 32,
                 "val_fraction": 0.1, "batch_size": 64, "augment": False, "train_limit": 0},
        "model": {"backbone": "efficientnet_lite0", "head": "seed", "weights": "pretrained",
                  "on_missing_weights": "fail"},
        "train": {"strategy": "frozen", "epochs": 10, "lr": 0.0, "optimizer": "adam", "weight_decay": 0.0,
                  "patience": 5, "plateau_factor": 0.5, "plateau_patience": 3, "seed": 42,
                  "class_weighting": False, "label_smoothing": 0.0, "partial_fraction": 0.2, "gradual_stages": 4,
                  "gradual_stage_epochs": 2, "gradual_lr_decay": 0.5, "min_lr": 1e-05, "device": "auto",
                  "amp": True, "channels_last": True, "threads": 0, "cache_features": True},
    },
    "overrides": {"full": {"train.epochs": 2}, "test_resnet": {"model": {"head": "linear"}}},
}


def test_grid_json_written_by_the_landed_code_still_reads():
    grid = GridConfig.from_dict(json.loads(json.dumps(OLD_GRID_JSON)), "runs/o/grid.json")
    assert grid.name == "o" and grid.strategies == ("frozen", "full") and grid.base.data.image_size == 32
    runs = {r.run_id: r for r in grid.runs()}
    assert runs["digits__test_efficientnet__frozen"].train.epochs == 10
    assert runs["digits__test_efficientnet__full"].train.epochs == 2
    assert runs["digits__test_resnet__frozen"].model.head == "linear"
    assert runs["digits__test_efficientnet__frozen"].model.head == "seed"
    assert grid.overrides == {"full": {"train.epochs": 2}, "test_resnet": {"model.head": "linear"}}
    assert GridConfig.from_dict(grid.to_dict()) == grid


@pytest.mark.parametrize("argv, message", [
    (["--set", "data.dataset=digits"], "--set data.dataset: set by the grid; use --datasets"),
    (["--set", "model.backbone=resnet50"], "--set model.backbone: set by the grid; use --backbones"),
    (["--set", "train.strategy=full"], "--set train.strategy: set by the grid; use --strategies"),
    (["--set", "train.epochz=3"], "--set train.epochz: unknown key; did you mean train.epochs?"),
    (["--set", "train.epochs=lots"], "--set train.epochs: expected an integer, got 'lots'"),
    (["--set", "model.head=mlp"], "--set model.head: 'mlp' is not one of seed, linear"),
    (["--epochs", "0"], "command line train.epochs: 0 is out of range (at least 1)"),
    (["--strategies", "frozen,ful"], "command line strategies: 'ful' is not one of frozen, partial, full"),
    (["--image-size", "4"], "command line data.image_size: 4 is out of range (8 to 1024)"),
])
def test_command_line_errors_name_key_and_source(capsys, argv, message):
    assert main(["run", *argv, "--show-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetune-tui: error: ") and message in err and err.count("\n") == 1


def test_each_value_is_checked_when_parsed_and_runs_only_combine():
    # a preset is code: from_dict re-parses every one of its values and must agree with it
    for name in ("demo", "seed"):
        grid = get_preset(name)
        assert GridConfig.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid
    # a later layer's key beats the same key in every earlier override table, and an emptied table goes
    g = apply_settings(GridConfig(overrides={"full": {"train.epochs": 2}, "frozen": {}}), {"train.epochs": 4})
    assert g.overrides == {"frozen": {}} and set(epochs_by_run(g).values()) == {4}


def test_run_config_json_accepts_its_own_dataset_backbone_strategy():
    run = get_preset("demo").runs()[1]
    assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict())), "config.json") == run
    with pytest.raises(ConfigError, match="config.json train.strategy: 'fast' is not one of frozen"):
        RunConfig.from_dict({"train": {"strategy": "fast"}}, "config.json")
    with pytest.raises(ConfigError, match="config.json extra: unknown key"):
        RunConfig.from_dict({"extra": 1}, "config.json")


@pytest.mark.parametrize("value", ["plain", 'quote " and \\ back', "tab\tnew\nline\x7f\x01", "ünï ✓ 😀", "",
                                   0, -3, 1e-05, 2.5e-4, 1e300, float("inf"), -float("inf"), 0.1, True, False,
                                   ("a", "b c", 'd"e')])
def test_toml_writer_values_read_back(value):
    text = toml_writer.dumps({"x": value, "t": {"a.b": value, "weird key": {"y": value}}, "empty": {}})
    doc = tomllib.loads(text)
    expect = list(value) if isinstance(value, tuple) else value
    assert doc == {"x": expect, "t": {"a.b": expect, "weird key": {"y": expect}}, "empty": {}}


def test_toml_writer_nan_and_bad_types():
    import math

    assert math.isnan(tomllib.loads(toml_writer.dumps({"x": float("nan")}))["x"])
    with pytest.raises(TypeError, match="can't write"):
        toml_writer.dumps({"x": None})


def test_a_set_of_an_axis_key_beats_the_axis_as_a_flag_does():
    # --set used to be layered under --axis: both runs trained at the axis's values, 5e-4 never used
    for extra in (["--set", "train.lr=5e-4"], ["--lr", "5e-4"]):
        grid = resolve_grid(build_parser().parse_args(["run", "--preset", "demo", "--axis", "train.lr=1e-3,2e-3",
                                                       *extra]))
        assert "train.lr" not in dict(grid.axes) and grid.base.train.lr == 5e-4
        assert {r.train.lr for r in grid.runs()} == {5e-4}
    grid = resolve_grid(build_parser().parse_args(["run", "--preset", "demo", "--axis", "train.lr=1e-3,2e-3",
                                                   "--set", "train.epochs=2"]))
    assert {r.train.lr for r in grid.runs()} == {1e-3, 2e-3}  # another key leaves the axis alone


def test_an_override_table_that_applies_to_no_run_is_a_warning_not_silence(ov_file, capsys):
    # the file's [overrides.full] when the command line narrows the grid to frozen runs: kept out of the grid,
    # and said (it was dropped without a word); the preset's own tables for names narrowed away are not
    grid = grid_of("--grid", str(ov_file), "--strategies", "frozen", "--backbones", "test_efficientnet")
    assert set(grid.overrides) == {'imagefolder:/data/my "pets"'}
    warnings = capsys.readouterr().err.splitlines()
    names = 'datasets digits, imagefolder:/data/my "pets", backbones test_efficientnet, strategies frozen'
    assert warnings == [f"finetune-tui: warning: {ov_file} [overrides.{name}]: applies to no run of this grid "
                        f"({names}); ignored" for name in ("full", "partial", "resnet50.a1_in1k")]
    grid_of("--preset", "demo", "--strategies", "frozen")
    assert capsys.readouterr().err == ""
