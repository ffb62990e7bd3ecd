import dataclasses
import re

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from pipeline.config import DEFAULT_STAGES, STAGES, ConfigError, ExtractConfig, load_stage, parse_overrides


def test_shipped_stages_yaml_is_every_setting_of_the_dataclasses_commented_out(tmp_path):
    """One source of defaults: the dataclasses. stages.yaml is written from them (`avu settings`)
    and sets nothing; uncommented, each of its lines is valid and gives the dataclass's default."""
    from cli import settings_text
    from trainer.config import TrainConfig

    text = settings_text()
    assert DEFAULT_STAGES.read_text() == text, "run `avu settings > stages.yaml` after changing a setting"
    assert CliRunner().invoke(app, ["settings"]).output == text
    assert yaml.safe_load(text) == {"extract": None, "datasets": None, "train": None}   # no value written twice
    stages = {**STAGES, "train": TrainConfig}
    uncommented = tmp_path / "all.yaml"
    uncommented.write_text(re.sub(r"^  # (\w+: .*?)([ \t]+# .*)?$", r"  \1", text, flags=re.M))
    doc = yaml.safe_load(uncommented.read_text())
    for stage, cls in stages.items():
        assert set(doc[stage]) == {f.name for f in dataclasses.fields(cls)}, stage
        assert load_stage(stage, uncommented, cls=cls) == cls() == load_stage(stage, cls=cls), stage
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
