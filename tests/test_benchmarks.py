"""A benchmark is one unit: its quoted name appears in its two files (stage one's adapter, stage
two's Benchmark) and the two dicts that list them, nowhere else; and a toy benchmark added from one
new file per stage (tests/toy/) goes through synth, extraction, training, `avu eval` and `avu report`
with nothing else changed."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.datasets import ADAPTERS, extract_dataset, load_dataset
from pipeline.synth import generate
from trainer.rundir import load_evals, load_run
from trainer.tasks import BENCHMARKS

from .conftest import REPO, tiny_config
from .toy import adapter as toy_adapter
from .toy import benchmark as toy_benchmark

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _file(module: str) -> str:
    return str(Path(sys.modules[module].__file__).relative_to(REPO))


def test_each_benchmark_is_named_in_its_adapter_its_benchmark_and_the_two_dicts_only():
    files = sorted([*(REPO / "pipeline").rglob("*.py"), *(REPO / "trainer").rglob("*.py"), REPO / "cli.py"])
    text = {str(f.relative_to(REPO)): f.read_text() for f in files}
    assert list(BENCHMARKS) == list(ADAPTERS)
    for name, spec in BENCHMARKS.items():
        home = {_file(ADAPTERS[name].load.__module__), "pipeline/datasets/__init__.py",
                _file(spec.score.__module__), "trainer/tasks/__init__.py"}
        found = {f for f, t in text.items() if re.search(f"[\"']{re.escape(name)}[\"']", t)}
        assert found == home, (name, sorted(found ^ home))
        assert len(found) <= 5


def test_a_toy_benchmark_from_one_file_per_stage_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(ADAPTERS, "toy", toy_adapter.ADAPTER)        # the one line in each stage's dict
    monkeypatch.setitem(BENCHMARKS, "toy", toy_benchmark.TOY)
    root = generate(tmp_path / "synth", seed=0, clips=6, only=["toy"])["toy"]
    ds = load_dataset("toy", root)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [6, 3, 3] and ds.T == 4
    store = tmp_path / "features" / "toy.zarr"
    summary, missing = extract_dataset(ds, store, tiny_config())
    assert not summary.failed and not missing

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--out", str(run), "--tasks", "toy", "--stores",
                                 str(tmp_path / "features" / "{task}.zarr"), "--quiet", "d_model=16", "n_heads=2",
                                 "d_ff=16", "batch_size=4", "workers=0", "max_steps=6", "eval_every=3"])
    assert result.exit_code == 0, result.output
    assert load_run(run).tasks == ("toy",)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {(r["kind"], r["step"]) for r in records if r["kind"] == "val"} == {("val", 3), ("val", 6)}

    result = runner.invoke(app, ["eval", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    ev = load_evals(load_run(run), "test")["toy"]
    assert ev.n == 3 and set(ev.metrics) == {"accuracy"}

    result = runner.invoke(app, ["report", str(run), "--format", "json"])
    assert result.exit_code == 0, result.output
    table = next(t for t in json.loads(result.output)["tables"] if t["id"] == "T")
    (row,) = table["rows"]
    assert row["task"] == "toy" and row["paper"] == {"": 50.0}
    assert row["cells"][0]["ours"] == pytest.approx(100 * ev.metrics["accuracy"])
    assert [t["id"] for t in json.loads(result.output)["tables"]] == ["T"]   # no other table has a toy row
