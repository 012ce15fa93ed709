"""The [study] form: one parser (parse_setting, scope "study"), command line > file > defaults, TOML round trip."""

from __future__ import annotations

import tomllib

import pytest

from engine.config import (
    ConfigError,
    GridConfig,
    StudyConfig,
    all_keys,
    load_study_file,
    parse_setting,
    read_study_file,
)


def test_file_then_flags_beat_defaults(tmp_path):
    f = tmp_path / "fm.toml"
    f.write_text('[study]\ndatasets = ["fashion_mnist", "digits"]\nextractors = ["efficientnet_lite0@96", '
                 '"run:g/r", "small_cnn"]\nsample = 500\nnormalize = "l2"\n')
    cfg = StudyConfig.from_layers((read_study_file(f), str(f)), ({"study.sample": "800", "study.knn_k": 3},
                                                                  "command line"))
    assert cfg.name == "fm"  # the file's stem
    assert cfg.datasets == ("fashion_mnist", "digits")
    assert cfg.extractors == ("efficientnet_lite0@96", "run:g/r", "small_cnn")
    assert (cfg.sample, cfg.knn_k, cfg.normalize) == (800, 3, "l2")  # the flag beat the file's 500
    assert cfg.image_size == StudyConfig().image_size  # untouched keys keep their defaults
    assert load_study_file(f) == StudyConfig.from_layers((read_study_file(f), str(f)))


def test_to_toml_reads_back_to_the_same_study():
    cfg = StudyConfig(name="x", datasets=("digits",), extractors=("a", "run:g/r"), sample=300, download=True,
                      normalize="standard")
    text = cfg.to_toml()
    assert text.startswith("# study 'x'")
    assert StudyConfig.from_layers((tomllib.loads(text), "toml")) == cfg
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg  # what study.json stores


@pytest.mark.parametrize("table, message", [
    ({"study": {"sampel": 100}}, "f.toml study.sampel: unknown key; did you mean study.sample?"),
    ({"study": {"sample": 5}}, "f.toml study.sample: 5 is out of range (0 (all) or at least 20)"),
    ({"study": {"normalize": "pca"}}, "f.toml study.normalize: 'pca' is not one of none, l2, standard"),
    ({"study": {"on_missing_weights": "ask"}}, "'ask' is not one of skip, random, fail"),
    ({"study": {"baseline_image_size": 30}}, "30 is out of range (16 to 256, a multiple of 8)"),
    ({"study": {"image_size": "big"}}, "f.toml study.image_size: expected an integer, got 'big'"),
    ({"study": {"name": "../up"}}, "study name '../up' must be letters, digits"),
    ({"data": {"image_size": 64}}, "f.toml data.image_size: unknown key; did you mean study.image_size?"),
])
def test_bad_settings_are_one_line_errors(table, message):
    with pytest.raises(ConfigError) as err:
        StudyConfig.from_layers((table, "f.toml"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_study_keys_are_refused_in_a_grid():
    with pytest.raises(ConfigError, match=r"grid.toml study.sample: a study setting; it belongs in a study file"):
        GridConfig.from_layers(({"study.sample": 100}, "grid.toml"))


def test_parse_setting_and_all_keys_know_the_study_scope():
    assert parse_setting("study.extractors", "a, b ,c", "--set", scope="study") == ("study", "extractors",
                                                                                    ("a", "b", "c"))
    keys = all_keys("study")
    assert "study.sample" in keys and "study.extractors" in keys and not any(k.startswith("data.") for k in keys)


def test_study_file_needs_a_study_table(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('datasets = ["digits"]\n')
    with pytest.raises(ConfigError, match=r"has no \[study\] table"):
        read_study_file(f)
    with pytest.raises(ConfigError, match="study file .*missing.toml not found"):
        read_study_file(tmp_path / "missing.toml")
    f.write_text("[study\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_study_file(f)
