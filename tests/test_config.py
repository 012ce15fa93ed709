import pytest

from engine.config import ConfigError, GridConfig, RunConfig, apply_settings, load_grid_file, parse_set, run_id
from engine.presets import get_preset


def test_toml_grid_file_and_overrides(tmp_path):
    f = tmp_path / "mygrid.toml"
    f.write_text('datasets = ["digits"]\nbackbones = ["test_efficientnet"]\nstrategies = ["frozen", "full"]\n'
                 "[data]\nimage_size = 32\n[train]\nepochs = 7\n")
    grid = load_grid_file(f)
    assert grid.name == "mygrid"
    assert grid.base.data.image_size == 32 and grid.base.train.epochs == 7
    assert [r.run_id for r in grid.runs()] == ["digits__test_efficientnet__frozen", "digits__test_efficientnet__full"]
    # command line beats file
    grid2 = apply_settings(grid, {"train.epochs": "3", "strategies": "partial", "data.augment": "true"})
    assert grid2.base.train.epochs == 3 and grid2.strategies == ("partial",) and grid2.base.data.augment is True
    assert grid2.base.data.image_size == 32  # untouched keys keep the file's value


@pytest.mark.parametrize("text, needle", [
    ("[train]\nepochz = 3\n", "train.epochz: unknown key; did you mean train.epochs?"),
    ("[train]\nepochs = 'many'\n", "epochs: expected an integer"),
    ("[model]\nhead = 'mlp'\n", "head: 'mlp' is not one of seed, linear"),
    ("[data]\nval_fraction = 1.5\n", "data.val_fraction: 1.5 is out of range (above 0, below 0.9)"),
    ("[extra]\nx = 1\n", "extra.x: unknown section 'extra'"),
    ("epochs = 3\n", "epochs: unknown key; grid keys are name, datasets"),
    ("[data]\ndataset = 'digits'\n", "data.dataset: set by the grid; use datasets = [...]"),
    ("[model]\nbackbone = 'resnet50'\n", "model.backbone: set by the grid; use backbones = [...]"),
    ("[train]\nstrategy = 'full'\n", "train.strategy: set by the grid; use strategies = [...]"),
    ("strategies = ['frozen', 'ful']\n", "strategies: 'ful' is not one of frozen, partial, full"),
    ("[overrides.full]\n\"data.dataset\" = 'digits'\n", "[overrides.full] data.dataset: set by the grid"),
    ("[overrides.full]\ndatasets = ['digits']\n", "[overrides.full] datasets: unknown key"),
    ("overrides = 3\n", "overrides: expected tables like [overrides.full]"),
    ("datasets = 3\n", "datasets: expected a list of names"),
    ("not toml [", "invalid TOML"),
    # nan/inf passed every range check, then crashed writing grid.json (an internal error, an empty grid folder)
    ("[train]\nweight_decay = nan\n", "train.weight_decay: expected a finite number, got nan"),
    ("[axes]\n\"train.gradual_lr_decay\" = [0.5, inf]\n", "train.gradual_lr_decay: expected a finite number, got inf"),
    # unranged before: each run failed with a raw ValueError/RuntimeError from torch
    ("[train]\nweight_decay = -1.0\n", "train.weight_decay: -1.0 is out of range (0 (none) or more)"),
    ("[train]\nseed = 99999999999999999999\n", "train.seed: 99999999999999999999 is out of range (0 to 2**32 - 1)"),
    ("[train]\nthreads = -3\n", "train.threads: -3 is out of range (0 (share the cores) or more)"),
])
def test_bad_config_values_name_key_and_file(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_grid_file(f)
    assert needle in str(info.value)
    assert str(f) in str(info.value)


def test_a_grid_file_with_a_utf8_byte_order_mark_reads(tmp_path):
    f = tmp_path / "bom.toml"
    f.write_bytes(b"\xef\xbb\xbf" + 'datasets = ["digits"]\n[train]\nepochs = 2\n'.encode())
    grid = load_grid_file(f)
    assert grid.datasets == ("digits",) and grid.base.train.epochs == 2


def test_missing_grid_file_message(tmp_path):
    with pytest.raises(ConfigError, match="not found; pass a TOML file"):
        load_grid_file(tmp_path / "nope.toml")


def test_set_syntax_and_unknown_section():
    assert parse_set(["train.epochs=3", "data.image_size = 96"]) == {"train.epochs": "3", "data.image_size": "96"}
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_set(["epochs"])
    with pytest.raises(ConfigError, match=r"^--axis 'train.lr': expected section.key=value, e.g. train.lr=1e-3"):
        parse_set(["train.lr"], "--axis", "train.lr=1e-3,3e-4")  # it named --set for an --axis
    with pytest.raises(ConfigError, match="unknown section"):
        apply_settings(GridConfig(), {"optim.lr": "1"})


def test_round_trip_through_dict():
    grid = get_preset("seed")
    assert GridConfig.from_dict(grid.to_dict()) == grid
    run = grid.runs()[5]
    assert RunConfig.from_dict(run.to_dict()) == run


def test_seed_preset_is_the_reference_grid():
    grid = get_preset("seed")
    assert len(grid.runs()) == 48
    assert grid.base.data.image_size == 32 and grid.base.train.epochs == 20
    assert grid.base.train.patience == 5 and grid.base.train.plateau_factor == 0.5
    assert grid.base.train.plateau_patience == 3 and grid.base.train.seed == 42
    assert grid.base.train.optimizer == "adam" and grid.base.model.head == "seed"


def test_run_id_is_folder_safe():
    # readable folder run ids (issue 9): the folder's own name, made folder-safe
    assert run_id("imagefolder:/data/my pets", "resnet50", "full") == "my-pets__resnet50__full"


def test_per_name_overrides_apply_to_matching_runs_only(tmp_path):
    f = tmp_path / "o.toml"
    f.write_text('datasets = ["digits"]\nbackbones = ["test_efficientnet", "test_resnet"]\n'
                 'strategies = ["frozen", "full"]\n[train]\nepochs = 10\n'
                 '[overrides.full]\n"train.epochs" = 2\n"data.train_limit" = 500\n'
                 '[overrides.test_resnet]\nmodel = { head = "linear" }\n')
    grid = load_grid_file(f)
    runs = {r.run_id: r for r in grid.runs()}
    assert runs["digits__test_efficientnet__frozen"].train.epochs == 10
    assert runs["digits__test_efficientnet__full"].train.epochs == 2
    assert runs["digits__test_efficientnet__full"].data.train_limit == 500
    assert runs["digits__test_resnet__full"].model.head == "linear"
    assert runs["digits__test_efficientnet__full"].model.head == "seed"
    assert GridConfig.from_dict(grid.to_dict()) == grid  # survives grid.json


def test_bad_override_names_the_table(tmp_path):
    f = tmp_path / "o.toml"
    f.write_text('[overrides.full]\n"train.epochz" = 2\n')
    with pytest.raises(ConfigError, match=r"o.toml \[overrides.full\] train.epochz: unknown key"):
        load_grid_file(f)
