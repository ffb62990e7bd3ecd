"""`avu train`, `avu eval` and `avu report` as a user runs them, on fake stores (tests/fake_stores.py):
the run directory they write, the evaluation files `avu report` reads, and the clear errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from trainer import checkpoint as ckpt
from trainer.rundir import load_evals, load_run

from .fake_stores import make_stores

REPO = Path(__file__).resolve().parent.parent

TINY = ["d_model=16", "n_heads=2", "d_ff=16", "mask_channels=8", "batch_size=4", "eval_batch_size=8",
        "workers=0", "max_steps=4", "eval_every=2", "log_every=1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def says(result, text: str) -> bool:
    """`text` is in the output, wherever rich broke its lines (long paths break mid-word)."""
    return "".join(text.split()) in "".join(result.output.split())


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

    last = tmp_path / "ave" / "checkpoints" / "last.pt"
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 3])               # cut short (a full disk, a copy stopped)
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "ave"), "--resume", "--quiet"])
    assert bad.exit_code == 2 and says(bad, f"error: {last}: cannot be read as a checkpoint")
    torch.save({"model": {}, "f": Path("x")}, last)          # needs a class: never unpickled
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "ave"), "--resume", "--quiet"])
    assert bad.exit_code == 2 and says(bad, f"error: {last}: not loaded: it holds objects other than tensors")
    assert "weights_only" not in said(bad)
    bad = runner.invoke(app, ["eval", str(tmp_path / "ave"), "--checkpoint", "last"])
    assert bad.exit_code == 2 and says(bad, f"{last}: not loaded")
    last.unlink()                                            # as if killed before its first checkpoint
    again = runner.invoke(app, ["train", "--out", str(tmp_path / "ave"), "--resume", "--quiet"])
    assert again.exit_code == 0, again.output
    assert "no checkpoint yet: starting from step 0" in said(again)
    assert torch.load(last, weights_only=True)["step"] == 4

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


def test_weakly_supervised_ave_trains_scores_and_fills_table_ii(stores, tmp_path, monkeypatch):
    """`ave_supervision=weak` trains from video_label alone (the segment labels are never read by
    its loss), is scored per segment as a full run is, and `avu report` puts it in Table II's
    weakly-supervised row (and not the fully-supervised one)."""
    from trainer.tasks import ave

    seen = []
    real = ave.weak_loss

    def recording(out, batch):
        seen.append(sorted(k for k in batch if k in ("labels", "video_label")))
        return real(out, batch)

    from dataclasses import replace

    from trainer import train as T
    monkeypatch.setitem(T.BENCHMARKS, "ave", replace(T.BENCHMARKS["ave"], losses={**T.BENCHMARKS["ave"].losses,
                                                                                 "weak": recording}))
    runner = CliRunner()
    run = tmp_path / "weak"
    result = runner.invoke(app, ["train", "--out", str(run), "--tasks", "ave", "--stores", stores, "--quiet",
                                 "ave_supervision=weak", *TINY])
    assert result.exit_code == 0, result.output
    assert len(seen) == 4                                 # every step used the weak loss
    assert load_run(run).ave_supervision == "weak"
    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    accuracy = json.loads((run / "eval" / "test" / "ave.json").read_text())["metrics"]["accuracy"]
    result = runner.invoke(app, ["report", str(run), "--format", "json"])
    assert result.exit_code == 0, result.output
    table = next(t for t in json.loads(result.output)["tables"] if t["id"] == "II")
    cells = {row["metric"]: row["cells"][0] for row in table["rows"]}
    assert cells["weakly-supervised"]["ours"] == pytest.approx(100 * accuracy)
    assert cells["weakly-supervised"]["paper"] == 74.2 and cells["fully-supervised"]["ours"] is None
    bad = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--tasks", "ave", "--stores", stores,
                              "--quiet", "ave_supervision=partial", *TINY])
    assert bad.exit_code == 2 and "partial" in said(bad)


def logged_step(path: Path) -> int:
    """The last step metrics.jsonl records so far (a line being written is skipped)."""
    steps = [0]
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps)


def group_is_gone(pgid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups: POSIX only")
def test_sigterm_to_the_process_group_saves_the_step_reached_and_resume_matches(stores, tmp_path):
    """What a cluster scheduler sends on preemption or at a time limit: SIGTERM to every process
    of the job, the loader processes too (workers=2). `avu train` finishes its step, writes
    last.pt at that step (not at the last validation), exits 0 and leaves no process behind;
    --resume then ends with the weights, optimiser and metrics.jsonl of an uninterrupted run."""
    args = ["d_model=16", "n_heads=2", "d_ff=16", "mask_channels=8", "batch_size=4", "eval_batch_size=8",
            "log_every=1", "max_steps=20", "eval_every=10"]
    train = ["train", "--tasks", "ave,llp", "--stores", stores, "--quiet"]
    run = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", *train, "--out", str(run), *args,
                             "workers=2"], cwd=REPO, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while logged_step(run / "metrics.jsonl") < 3:          # a few steps trained, loaders running
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no training step within 180 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert group_is_gone(proc.pid), "a process of the job outlived it"
    stopped = re.search(r"stopped at step (\d+): resume with --resume", " ".join(err.split()))
    assert stopped, err[-3000:]
    step = int(stopped.group(1))
    assert 3 <= step < 20, "the run ended before the signal came: raise max_steps"
    assert ckpt.load(run / "checkpoints" / "last.pt")["step"] == step == logged_step(run / "metrics.jsonl")

    runner = CliRunner()
    result = runner.invoke(app, [*train, "--out", str(tmp_path / "whole"), *args, "workers=0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "--quiet", "workers=0"])
    assert result.exit_code == 0, result.output
    a, b = (ckpt.load(tmp_path / r / "checkpoints" / "last.pt") for r in ("whole", "cut"))
    assert a["step"] == b["step"] == 20 and a["sampler"] == b["sampler"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert (run / "metrics.jsonl").read_text() == (tmp_path / "whole" / "metrics.jsonl").read_text()


def test_a_second_ctrl_c_stops_at_once(stores, tmp_path, monkeypatch):
    """The first Ctrl-C asks for a stop at the end of the step; a second one, during that step,
    stops at once: exit 130, a line saying how to resume, the last checkpoint left as it was."""
    from tests.fake_stores import on_loss_call
    from trainer import train as T

    def ctrl_c_twice():                             # at step 3
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(T, "BENCHMARKS", on_loss_call(3, ctrl_c_twice))
    run = tmp_path / "run"
    before = signal.signal(signal.SIGINT, signal.default_int_handler)   # a terminal's Ctrl-C, whatever ran before
    try:
        result = CliRunner().invoke(app, ["train", "--out", str(run), "--tasks", "ave", "--stores", stores,
                                          "--quiet", *TINY])
        handler_after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == 130, result.output
    assert says(result, f"interrupted: stopped at once; `avu train --out {run} --resume` continues")
    assert ckpt.load(run / "checkpoints" / "last.pt")["step"] == 2      # the validation at step 2, untouched
    assert handler_after is signal.default_int_handler                  # handlers given back
