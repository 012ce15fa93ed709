"""Strategy, head and preset registries: entries carry the behaviour; CLI and config read their names."""

import os
import subprocess
import sys

import pytest

from engine.config import ConfigError, DataConfig, GridConfig, RunConfig, TrainConfig, apply_settings
from engine.heads import HEADS, build_head, register_head
from engine.presets import PRESETS, get_preset, register_preset
from engine.registry import NotFound, Registry
from engine.strategies import STRATEGIES, StagePlan, get_strategy, n_stages, plan, register_strategy, stage_for_epoch
from finetune_tui.cli import build_parser, main, resolve_grid


@pytest.mark.parametrize("lookup, message", [
    (lambda: get_strategy("frozn"), "strategy 'frozn' not found; choose one of frozen, partial, full, gradual, "
                                    "discriminative"),
    (lambda: build_head("mlp", 8, 2), "head 'mlp' not found; choose one of seed, linear"),
    (lambda: get_preset("quick"), "preset 'quick' not found; choose one of seed, demo"),
    (lambda: plan(TrainConfig(strategy="nope"), 4), "strategy 'nope' not found"),
])
def test_unknown_names_are_value_errors_listing_the_choices(lookup, message):
    with pytest.raises(NotFound) as info:
        lookup()
    assert isinstance(info.value, ValueError) and str(info.value).startswith(message)


def test_registry_is_a_mapping_and_refuses_a_name_twice():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    assert list(reg) == ["a"] and reg["a"] == 1 and "b" not in reg and reg.get("b") is None and len(reg) == 1
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match="strategy 'frozen' is registered twice"):
        register_strategy("frozen", default_lr=1.0, help="again")(lambda cfg, n, stage, lr: None)


def test_entries_carry_their_behaviour():
    assert [STRATEGIES[s].default_lr for s in STRATEGIES] == [1e-3, 1e-4, 1e-5, 1e-3, 1e-3, 3e-4]
    assert all(STRATEGIES[s].description for s in STRATEGIES) and all(HEADS[h].description for h in HEADS)
    partial = STRATEGIES["partial"].plan(TrainConfig(strategy="partial"), 10)
    assert partial == StagePlan(0, 2, 1e-4, (0.0,) * 8 + (1e-4,) * 2)
    for name in ("seed", "demo"):
        grid = PRESETS[name].build()
        assert isinstance(grid, GridConfig) and grid.name == name and PRESETS[name].description
        assert get_preset(name) == grid
    # one-stage strategies never move on; gradual's schedule comes from its entry
    for s in ("frozen", "partial", "full", "discriminative"):
        cfg = TrainConfig(strategy=s)
        assert n_stages(cfg) == 1 and {stage_for_epoch(cfg, e) for e in range(1, 30)} == {0}
    cfg = TrainConfig(strategy="gradual", gradual_stages=2, gradual_stage_epochs=3)
    assert n_stages(cfg) == 3 and [stage_for_epoch(cfg, e) for e in range(1, 11)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]


@pytest.fixture
def extra_entries():
    """A throwaway strategy, head and preset, registered the way a plugin would."""

    @register_strategy("top2", default_lr=3e-4, help="the last two groups + head", stages=lambda cfg: 2,
                       stage_epochs=lambda cfg: 1)
    def top2(cfg, n_groups, stage, lr):
        k = min(2, n_groups) if stage else 0
        return StagePlan(stage, k, lr, (0.0,) * (n_groups - k) + (lr,) * k)

    @register_head("tiny", help="a test head")
    def tiny(in_features, num_classes):
        from torch import nn

        return nn.Sequential(nn.Linear(in_features, num_classes), nn.Identity())

    @register_preset("mini", help="one digits run")
    def mini():
        return GridConfig(name="mini", datasets=("digits",), backbones=("test_efficientnet",), strategies=("top2",),
                          base=RunConfig(data=DataConfig(image_size=32), train=TrainConfig(epochs=2)))

    yield
    STRATEGIES.remove("top2")
    HEADS.remove("tiny")
    PRESETS.remove("mini")


def test_cli_choices_and_help_come_from_the_registries(extra_entries, capsys):
    parser = build_parser()
    run_parser = next(a for a in parser._actions if a.dest == "command").choices["run"]
    flags = {a.dest: a for a in run_parser._actions}
    assert list(flags["preset"].choices) == ["seed", "demo", "recommended", "mini"]
    assert list(flags["head"].choices) == ["seed", "linear", "tiny"]
    assert flags["strategies"].help == "comma-separated: frozen, partial, full, gradual, discriminative, two_stage, top2"
    args = parser.parse_args(["run", "--preset", "mini", "--head", "tiny", "--strategies", "top2,frozen"])
    grid = resolve_grid(args)
    assert grid.name == "mini" and grid.strategies == ("top2", "frozen") and grid.base.model.head == "tiny"
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for needle in ("  mini            one digits run", "  top2            the last two groups + head",
                   "  tiny            a test head", "  partial         last fraction of the backbone's layer groups"):
        assert needle in text
    # the new strategy's schedule drives the stage wrappers the trainer calls
    cfg = TrainConfig(strategy="top2")
    assert n_stages(cfg) == 2 and stage_for_epoch(cfg, 1) == 0 and stage_for_epoch(cfg, 5) == 1
    assert plan(cfg, 5, 1) == StagePlan(1, 2, 3e-4, (0.0, 0.0, 0.0, 3e-4, 3e-4))


def test_config_validates_heads_and_strategies_against_the_registries(extra_entries):
    assert apply_settings(GridConfig(), {"model.head": "tiny"}).base.model.head == "tiny"
    HEADS.remove("tiny")
    with pytest.raises(ConfigError, match="model.head: 'tiny' is not one of seed, linear"):
        apply_settings(GridConfig(), {"model.head": "tiny"})
    with pytest.raises(ConfigError, match="strategies: 'top3' is not one of frozen, partial, full, gradual, "
                                          "discriminative, two_stage, top2"):
        apply_settings(GridConfig(), {"strategies": "top3"})


def test_registries_config_and_cli_parser_import_without_torch(tmp_path):
    code = ("import sys\n"
            "import engine.config, engine.presets, engine.strategies, engine.heads\n"
            "from finetune_tui.cli import build_parser, resolve_grid\n"
            "args = build_parser().parse_args(['run', '--preset', 'demo', '--epochs', '5', '--show-config'])\n"
            "grid = resolve_grid(args)\n"
            "grid.to_toml()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "print(len(grid.runs()))\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4"
