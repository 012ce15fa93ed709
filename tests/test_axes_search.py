"""Hyper-parameter axes and the [search] section (issue 10): the runs they make, their ids, their checks."""

import json
import tomllib

import pytest

from engine.config import ConfigError, GridConfig, RunConfig, load_grid_file, run_id
from finetune_tui.cli import build_parser, resolve_grid

AXES_TOML = """
name = "ax"
datasets = ["digits"]
backbones = ["test_efficientnet"]
strategies = ["frozen", "full"]
[train]
epochs = 4
[overrides.full]
"train.lr" = 1e-5
"train.epochs" = 2
[axes]
"train.lr" = [1e-3, 3e-4]
"data.image_size" = [32, 48]
"""


@pytest.fixture
def axes_file(tmp_path):
    f = tmp_path / "ax.toml"
    f.write_text(AXES_TOML)
    return f


def test_axes_multiply_the_runs_and_name_them(axes_file):
    grid = load_grid_file(axes_file)
    runs = grid.runs()
    assert len(runs) == 2 * 2 * 2
    ids = [r.run_id for r in runs]
    assert ids[:4] == ["digits__test_efficientnet__frozen__lr=0.001__image_size=32",
                       "digits__test_efficientnet__frozen__lr=0.001__image_size=48",
                       "digits__test_efficientnet__frozen__lr=0.0003__image_size=32",
                       "digits__test_efficientnet__frozen__lr=0.0003__image_size=48"]
    assert len(set(ids)) == len(ids)
    by_id = {r.run_id: r for r in runs}
    full = by_id["digits__test_efficientnet__full__lr=0.0003__image_size=48"]
    # the axis value beats the override of the same key; the override's other keys still apply
    assert full.train.lr == 3e-4 and full.data.image_size == 48 and full.train.epochs == 2
    assert full.axis_values == {"train.lr": 3e-4, "data.image_size": 48}
    # config.json carries the axes; read back it is the same run with the same id
    again = RunConfig.from_dict(json.loads(json.dumps(full.to_dict())))
    assert again == full and again.run_id == full.run_id and full.to_dict()["axes"] == {"train.lr": 3e-4,
                                                                                          "data.image_size": 48}
    # grid.json and --show-config's TOML read back to the same grid
    assert GridConfig.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid
    assert GridConfig.from_dict(tomllib.loads(grid.to_toml())) == grid


def test_run_ids_of_axis_values_are_folder_safe_and_spell_out_clashing_names():
    assert run_id("footwear", "m", "full", (("train.schedule", "cosine"), ("train.ema", True))) == \
        "footwear__m__full__schedule=cosine__ema=true"
    assert run_id("footwear", "m", "full", (("data.weird", "a b/c"),)) == "footwear__m__full__weird=a-b-c"
    # the same field name in two sections: the section stays in the id
    ids = run_id("d", "m", "s", (("data.seed", 1), ("train.seed", 2)))
    assert ids == "d__m__s__data.seed=1__train.seed=2"
    assert run_id("d", "m", "s", (("train.lr", 1e-3),), trial=7) == "d__m__s__t007"


def test_command_line_axis_and_settings(axes_file):
    def grid_of(*argv):
        return resolve_grid(build_parser().parse_args(["run", *argv]))

    grid = grid_of("--grid", str(axes_file), "--axis", "train.label_smoothing=0,0.1")
    assert set(grid.axes) == {"train.lr", "data.image_size", "train.label_smoothing"}
    assert len(grid.runs()) == 16
    # a setting given on the command line beats the file's axis of the same key
    grid = grid_of("--grid", str(axes_file), "--lr", "1e-2")
    assert set(grid.axes) == {"data.image_size"} and {r.train.lr for r in grid.runs()} == {1e-2}
    assert grid_of("--preset", "demo", "--axis", "data.image_size=64,96").axes == {"data.image_size": (64, 96)}


@pytest.mark.parametrize("text, needle", [
    ('[axes]\n"train.lr" = 3\n', '[axes] train.lr: expected a list of values'),
    ('[axes]\n"train.lr" = ["fast"]\n', "[axes] train.lr: 'fast' is out of range"),
    ('[axes]\n"train.epochz" = [1, 2]\n', "[axes] train.epochz: unknown key; did you mean train.epochs?"),
    ('[axes]\n"train.strategy" = ["full"]\n', "[axes] train.strategy: set by the grid"),
    ('[axes]\n"data.image_size" = [64, 64]\n', "[axes] data.image_size: lists a value twice"),
    ('[axes]\n"data.image_size" = [4, 64]\n', "data.image_size: 4 is out of range"),
    ('[search]\ntrials = 3\n', "[search]: trials = 3 but no [search.space]"),
    ('[search]\ntrial = 3\n', "[search] trial: unknown key; did you mean trials?"),
    ('[search]\npruner = "hyperband"\n', "[search] pruner: 'hyperband' is not one of median, none"),
    ('[search.space]\n"train.lr" = {low = 1e-2, high = 1e-4}\n', "needs low < high"),
    ('[search.space]\n"train.schedule" = {low = 1, high = 2}\n', "train.schedule: expected a string"),
    ('[search.space]\n"train.bn" = ["train", "sometimes"]\n', "train.bn: 'sometimes' is not one of train, frozen"),
])
def test_bad_axes_and_search_name_the_key_and_file(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_grid_file(f)
    assert needle in str(info.value) and str(f) in str(info.value)


def test_search_section_reads_and_round_trips(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('datasets = ["digits"]\nbackbones = ["test_efficientnet"]\nstrategies = ["full"]\n'
                 '[search]\ntrials = 4\nstartup_trials = 2\n[search.space]\n'
                 '"train.lr" = {low = 1e-4, high = 1e-2, log = true}\n"data.image_size" = [32, 48]\n'
                 '"train.epochs" = {low = 1, high = 3}\n')
    grid = load_grid_file(f)
    assert grid.search.enabled and grid.search.trials == 4 and grid.search.pruner == "median"
    assert grid.search.space == {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "data.image_size": [32, 48],
                                 "train.epochs": {"low": 1, "high": 3, "log": False}}
    assert GridConfig.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid
    assert GridConfig.from_dict(tomllib.loads(grid.to_toml())) == grid


def test_a_search_without_optuna_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    """Optuna is the [search] extra, not the core: a grid that needs it says how to get it, in one line."""
    from finetune_tui.cli import main

    f = tmp_path / "s.toml"
    f.write_text('datasets = ["digits"]\nbackbones = ["test_efficientnet"]\nstrategies = ["full"]\n'
                 '[search]\ntrials = 2\n[search.space]\n"train.lr" = [1e-3, 1e-4]\n')
    monkeypatch.setitem(__import__("sys").modules, "optuna", None)  # import optuna -> ImportError
    assert main(["run", "--grid", str(f), "--show-config"]) == 2
    assert capsys.readouterr().err == ("finetune-tui: error: [search] needs the optuna package, which is not "
                                       "installed; run: pip install 'finetune-tui[search]'\n")


def test_a_search_runs_its_trials_as_runs_and_prunes_through_the_cancel_path(tmp_path):
    from engine.config import DataConfig, ModelConfig, TrainConfig
    from engine.orchestrator import Orchestrator, prepare
    from engine.store import GridDir, RunStore

    base = RunConfig(data=DataConfig(dataset="digits", image_size=32, batch_size=64, train_limit=600),
                     model=ModelConfig(backbone="test_efficientnet", head="linear", weights="random"),
                     train=TrainConfig(epochs=4, threads=1, patience=10))
    # lr 1e-7 can't learn in 4 epochs: once two trials have set the median, such a trial is pruned. The random
    # sampler with seed 6 draws 3e-3, 3e-3, then 1e-7 (checked against Optuna's RandomSampler)
    grid = GridConfig.from_layers(({"search": {"trials": 3, "startup_trials": 2, "seed": 6, "sampler": "random",
                                               "space": {"train.lr": [3e-3, 1e-7]}}}, "test"),
                                  start=GridConfig(name="s", datasets=("digits",), backbones=("test_efficientnet",),
                                                   strategies=("full",), base=base))
    gdir = prepare(grid, tmp_path)
    assert GridDir(gdir).run_ids() == []  # trials are made as the search goes
    counts = Orchestrator(gdir).run()
    runs = {r.run_id: r for r in RunStore(tmp_path).runs("s")}
    assert sorted(runs) == [f"digits__test_efficientnet__full__t{i:03d}" for i in range(3)]
    assert GridDir(gdir).run_ids() == sorted(runs)
    configs = {rid: json.loads((gdir / rid / "config.json").read_text()) for rid in runs}
    assert all(c["axes"]["train.lr"] == c["train"]["lr"] for c in configs.values())
    pruned = [rid for rid, r in runs.items() if r.summary.status == "cancelled"]
    assert pruned == ["digits__test_efficientnet__full__t002"]
    assert runs[pruned[0]].summary.error.startswith("pruned by the search after epoch")
    assert all(configs[rid]["train"]["lr"] == 1e-7 for rid in pruned)
    assert all(len(runs[rid].summary.val_acc_history) < 4 for rid in pruned)
    assert counts == {"done": 2, "cancelled": 1}
    summary = json.loads((gdir / "search.json").read_text())
    study = summary["studies"]["digits/test_efficientnet/full"]
    states = {t["run_id"]: t["state"] for t in study["trials"]}
    assert states == {rid: "pruned" if rid in pruned else "complete" for rid in runs}
    best = study["best_run"]
    assert configs[best]["train"]["lr"] == 3e-3 and study["best_value"] == runs[best].summary.best_val_acc
    # run again: every trial is settled, nothing restarts, no trial is added
    assert Orchestrator(gdir).run() == counts
    assert sorted(p.name for p in gdir.iterdir() if p.is_dir()) == sorted(runs)


def _axes_store(root):
    """A finished grid with a train.lr axis, written through the store's writer (no training)."""
    from engine import events as ev
    from engine.store import RunStore, RunWriter

    grid = GridConfig.from_layers(({"name": "ax", "datasets": "digits", "backbones": "test_efficientnet",
                                    "strategies": "frozen,full", "axes": {"train.lr": [1e-3, 3e-4]}}, "test"))
    gdir = RunStore(root).grid("ax")
    gdir.path.mkdir(parents=True)
    gdir.write_info(grid, [r.run_id for r in grid.runs()])
    accs = {}
    for i, run in enumerate(grid.runs()):
        rd = gdir.run(run.run_id)
        rd.path.mkdir()
        rd.write_config(run)
        writer = RunWriter(rd, echo=False)
        writer.emit(ev.Started(run_id=run.run_id, config=run.to_dict()))
        writer.emit(ev.Epoch(epoch=1, epochs=1, val_loss=0.5, val_acc=0.80 + i / 50))
        writer.emit(ev.Finished(best_epoch=1, epochs_run=1, test={"accuracy": 0.81 + i / 50, "f1_macro": 0.8}))
        writer.close()
        rd.write_results({"accuracy": 0.81 + i / 50, "f1_macro": 0.8, "train_seconds": 10.0 * (i + 1)})
        accs[run.run_id] = 0.81 + i / 50
    return grid, accs


def test_runs_groups_by_an_axis(tmp_path, capsys):
    from finetune_tui.cli import main

    _axes_store(tmp_path)
    assert main(["runs", "--runs", str(tmp_path), "--group-by", "lr"]) == 0
    out = capsys.readouterr().out
    table, groups = out.split("by lr")
    # rows ordered by the axis value, then one summary row per value: runs 1 and 3 had lr 0.0003
    assert table.index("0.0003") < table.index("0.001")
    lines = {line.split()[0]: line.split() for line in groups.splitlines() if line.strip()[:1].isdigit()}
    assert lines["0.0003"][1:] == ["2", "2", "0.840", "0.860", "0.850", "0.870"]
    assert lines["0.001"][1:] == ["2", "2", "0.820", "0.840", "0.830", "0.850"]
    # a key nothing has: one line naming what can be grouped by (it printed one "(none)" group)
    assert main(["runs", "--runs", str(tmp_path), "--group-by", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "--group-by 'nonsense': these runs can be grouped by" in err and "train.lr" in err and "lr," in err
    assert main(["runs", "--runs", str(tmp_path), "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert "axis:train.lr" in header and "axes" not in header


def test_report_groups_runs_by_axis_values(tmp_path):
    from report import tables
    from report.loading import load_grid

    _axes_store(tmp_path)
    grid = load_grid(tmp_path / "ax")
    assert set(tables.run_table(grid)["axes"]) == {"lr=0.001", "lr=0.0003"}
    df = tables.axes_table(grid.runs, "digits").set_index("value")
    assert df.loc["0.0003", "runs"] == 2 and df.loc["0.0003", "mean_accuracy"] == pytest.approx(0.85)
    assert df.loc["0.001", "best_accuracy"] == pytest.approx(0.85) and set(df["axis"]) == {"train.lr"}
