"""The end-to-end demo, shortened: synthesise -> extract all ten -> train jointly -> evaluate
-> report, on a few clips per dataset and a few steps (the full one: `avu demo`)."""

from __future__ import annotations

import json

import torch

from pipeline.datasets import ADAPTERS, unav100
from pipeline.store import FeatureStore
from trainer.demo import SYNTH, demo, demo_hops
from trainer.tasks import BENCHMARKS

HEADLINE = {name: b.headline for name, b in BENCHMARKS.items()}
from trainer.rundir import load_evals, load_run


def test_short_demo_end_to_end_and_rerun_skips_done_work(tmp_path):
    torch.set_num_threads(2)
    lines = demo(tmp_path, scale=0.1, steps=24, quiet=True)
    assert set(lines) == set(HEADLINE)
    for task, scores in lines.items():
        assert tuple(scores) == HEADLINE[task]
        assert all(0 <= ours <= 100 and 0 <= chance <= 100 for ours, chance in scores.values())
    run = load_run(tmp_path / "run")
    assert run.joint and run.random_weights and run.tasks == tuple(BENCHMARKS)
    evals = load_evals(run, "test")
    assert set(evals) == set(HEADLINE) and all(e.random_weights for e in evals.values())
    assert (tmp_path / "features" / "avss.zarr").is_dir() and (tmp_path / "synth" / "music-avqa").is_dir()
    record = json.loads((tmp_path / "run" / "demo.json").read_text())
    assert set(record["seconds"]) == {"synthesise", "extract", "train", "evaluate"}
    assert set(record["datasets"]) == set(ADAPTERS)
    assert all(set(times) == {"synthesise", "extract"} for times in record["datasets"].values())
    unav = json.loads((tmp_path / "synth" / "unav100" / unav100.FILE).read_text())["database"]
    assert all(10 <= v["duration"] <= SYNTH["dense_longest"] for v in unav.values())   # the demo's short clips
    assert FeatureStore(tmp_path / "features" / "music-avqa.zarr").attrs["hop"] == demo_hops()["music-avqa"] == 3.0

    again = demo(tmp_path, scale=0.1, steps=24, quiet=True)       # everything there: no training again
    assert again == lines
    seconds = json.loads((tmp_path / "run" / "demo.json").read_text())["seconds"]
    assert seconds["train"] < 5 and seconds["synthesise"] < 5
