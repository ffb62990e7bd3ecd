import dataclasses

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from pipeline.config import DEFAULT_STAGES, STAGES, ConfigError, ExtractConfig, load_stage, parse_overrides


def test_shipped_stages_yaml_loads_and_names_every_setting():
    doc = yaml.safe_load(DEFAULT_STAGES.read_text())
    for stage, cls in STAGES.items():
        cfg = load_stage(stage)
        assert isinstance(cfg, cls)
        assert set(doc[stage]) == {f.name for f in dataclasses.fields(cls)}, "stages.yaml must list every setting"
    assert load_stage("extract").clip_model == "ViT-L-14-quickgelu"   # the paper's CLIP


def test_unknown_key_fails_naming_it_and_the_valid_ones(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("extract:\n  T: 10\n  patchgrid: 8\n")
    with pytest.raises(ConfigError, match=r"s\.yaml \[extract\].*patchgrid.*valid keys:.*patch_grid"):
        load_stage("extract", f)
    f.write_text("extrakt:\n  T: 10\n")
    with pytest.raises(ConfigError, match="unknown section.*extrakt"):
        load_stage("extract", f)


def test_overrides_are_typed_and_checked():
    cfg = load_stage("extract", overrides=parse_overrides(["workers=4", "random_weights=true",
                                                           "scheduler=tcp://h:8786", "patch_grid=0"]))
    assert (cfg.workers, cfg.random_weights, cfg.scheduler, cfg.patch_grid) == (4, True, "tcp://h:8786", 0)
    assert load_stage("extract", overrides={"scheduler": "null"}).scheduler is None
    with pytest.raises(ConfigError, match="workers: expected int"):
        load_stage("extract", overrides=parse_overrides(["workers=many"]))
    with pytest.raises(ConfigError, match="T: expected an integer"):
        load_stage("extract", overrides={"T": 2.5})
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["workers"])
    assert isinstance(load_stage("extract"), ExtractConfig)


def test_cli_rejects_unknown_override(tmp_path):
    result = CliRunner().invoke(app, ["extract", "--videos", str(tmp_path), "--out", str(tmp_path / "s"), "bogus=1"])
    assert result.exit_code == 2
    assert "bogus" in result.output
