"""`avu train`, `avu eval` and `avu report` as a user runs them, on fake stores (tests/fake_stores.py):
the run directory they write, the evaluation files `avu report` reads, and the clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import app
from trainer.rundir import load_evals, load_run

from .fake_stores import make_stores

TINY = ["d_model=16", "n_heads=2", "d_ff=16", "mask_channels=8", "batch_size=4", "eval_batch_size=8",
        "workers=0", "max_steps=4", "eval_every=2", "log_every=1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> str:
    return make_stores(tmp_path_factory.mktemp("stores"))


def test_train_eval_report_from_the_command_line(stores, tmp_path):
    runner = CliRunner()
    run = tmp_path / "joint"
    result = runner.invoke(app, ["train", "--out", str(run), "--tasks", "ave,llp,music-avqa", "--stores", stores,
                                 "--quiet", *TINY])
    assert result.exit_code == 0, result.output
    r = load_run(run)
    assert list(r.tasks) == ["ave", "llp", "music-avqa"] and r.joint
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(rec["step"] for rec in records) == 4
    assert {rec["task"] for rec in records if rec["kind"] == "val"} == {"ave", "llp", "music-avqa"}

    # a second `train` into the same folder is refused
    again = runner.invoke(app, ["train", "--out", str(run), "--stores", stores, "--quiet", *TINY])
    assert again.exit_code == 2 and "already holds a run" in said(again)

    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    evals = load_evals(r, "test")
    assert set(evals) == {"ave", "llp", "music-avqa"}
    assert "accuracy" in result.output and "chance" in result.output
    ave = json.loads((run / "eval" / "test" / "ave.json").read_text())

    # rescoring the predictions file, without the model, gives the same numbers
    (run / "eval" / "test" / "ave.json").unlink()
    result = runner.invoke(app, ["eval", str(run / "eval" / "test" / "ave.npz")])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval" / "test" / "ave.json").read_text())["metrics"] == ave["metrics"]

    result = runner.invoke(app, ["report", str(run), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "78.7" in result.output        # the paper's AVE number beside ours


def test_single_task_run_and_clear_errors(stores, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "ave"), "--tasks", "ave", "--stores", stores,
                                 "--quiet", *TINY])
    assert result.exit_code == 0, result.output
    assert not load_run(tmp_path / "ave").joint            # the paper's "w/o jt" baseline

    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--tasks", "ave,avqa", "--stores", stores])
    assert bad.exit_code == 2 and "unknown task" in said(bad)
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--stores", stores, "bacth_size=3"])
    assert bad.exit_code == 2 and "bacth_size" in said(bad)
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--tasks", "ave",
                              "--stores", str(tmp_path / "none-{task}.zarr")])
    assert bad.exit_code == 2 and "none-ave.zarr" in said(bad)
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "y"), "--resume", "--stores", stores])
    assert bad.exit_code == 2 and "nothing to resume" in said(bad)
    bad = runner.invoke(app, ["eval", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "nowhere" in said(bad)
    no_metrics = runner.invoke(app, ["report", str(tmp_path / "ave")])
    assert no_metrics.exit_code == 1 and "ave" in said(no_metrics)
