"""`avu demo`: the main job end to end on the built-in synthetic mini-benchmark.

    synthesise the ten datasets (pipeline/synth.py) -> extract each with random-weight
    encoders (the tiny open_clip "avu-tiny-clip", random VGGish) -> train all tasks jointly
    -> evaluate on the test splits -> `avu report`, with chance beside every number

Every stage skips what a previous demo in the same folder finished (synth folders, done clips,
a finished run, and a killed training run resumes), so running it again is cheap. demo.json
(in the run) records the time of each stage and of each dataset's synthesis and extraction.

Decisions:
- Random-weight encoders: a fresh machine has no pretrained weights. Every output says so.
- Sizes fit 15 minutes on 2 CPU cores (AVX2) for all ten benchmarks: 9 min measured on a fresh
  clone in session 22 (BENCHMARKS.md). Where the time goes: synthesis is mostly ffmpeg (~0.2 s a 10 s mp4, a third of
  it the process start), extraction mostly VGGish (~30 ms an audio example, one a feature
  step), training the steps. So the cuts are in feature steps and clips:
  each adapter's `demo_clips` (pipeline/datasets/; train, val and test half), the extraction
  `hop` of four benchmarks (EXTRACT), the dense clips' length (SYNTH), STEPS, a small model
  (DEMO_TRAIN), AVSBench masks at 32 x 32 (`avs_mask_size`; the official 224 only costs time
  here, the synthetic frames are 112 x 112) and the patch grid 4 x 4.
- Demo hops (the benchmarks' own stay 1 s, dense 0.25 s): only where no target is per second.
  VGG-SS 2 s (it scores the middle frame, T // 2 of 5 steps is still the frame at 5 s; half
  the VGGish examples). MUSIC-AVQA 3 s: 20 steps a 60 s video instead of 60 (a third of the
  extraction, and its batches, half the training steps, run 5 TPM scales on 20 steps instead
  of 6 on 60); the synthetic scenes change only at 10 s onsets and stop by 55 s, which 3 s
  steps still resolve. The dense three 0.5 s: half the steps of 0.25 s in extraction and in
  every batch; the synthetic events are 1-8 s, at least 2 steps each.
- Dense clips 10-20 s (SYNTH dense_longest; `avu synth` keeps 10-60 s): a batch is padded to
  its longest clip, and with one 60 s clip in most batches of 16 a 0.25 s UnAV-100 step
  cost 15-40x a 10 s task's (measured under load). The squeeze keeps every other draw, so the
  seven other datasets are bit-identical to `avu synth`'s for the same clip counts.
- DEMO_TRAIN departs from the paper's settings where a short run on tiny data needs it:
  lr 1e-3, x0.1 once after 75 % of the steps (without the decay, single tasks swing by 20+
  points between validations: measured, LLP 47 -> 39 -> 20), no dropout, and the segmentation
  tasks and MUSIC-AVQA drawn more often than the others (their dense or question-conditioned
  targets need the most steps: S4 mIoU leaves 0 after a few hundred of its own steps, AVE is
  at 90 % after ~60, MUSIC-AVQA's yes/no questions about a named instrument stay at chance for
  ~1000 of its own steps, so it is drawn 8x: 1,100 of 3,000 steps): each Benchmark's
  `demo_weight`. The dense three learn at weight 1 (~140 steps each: far above chance).
  MUSIC-AVQA batches take 4 questions of each video (`questions_per_video`), so the model
  encodes each video once per run: 5 videos a batch instead of 14.5 (BENCHMARKS.md). Features
  and question embeddings are standardised (trainer/data.py), which random-weight VGGish and
  the random text tower need (VGGish outputs ~0.005; questions from one template at cosine
  ~0.98).
- STEPS 3000 (was 4000): with the per-benchmark TPM scales the short tasks run fewer layers,
  and every benchmark stays far above chance at 3000 (measured; the notes of issue 16).
- demo_clips: AVE 32 training clips (89 % against 42 % chance; 48 gave 92 % in session 20), VGG-SS
  128 (its contrastive loss memorised 96 in a 1000-step run; 128 at 2 s steps costs what 64
  did at 1 s), MUSIC-AVQA 64 training videos of 60 s with ~20 questions each (24 videos: the
  model learns the training questions and stays at chance on the test ones), the dense three
  24 (UnAV-100, ActivityNet; DESED 24 of its 10 s clips).
- `scale` multiplies the clip counts and `steps` sets the training length; tests run a tiny
  version (tests/test_demo.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

EXTRACT = dict(clip_model="avu-tiny-clip", random_weights=True, workers=0, patch_grid=4, clip_batch=80,
               clips_per_task=8, decode_threads=1)   # + hop: each adapter's demo_hop (demo_hops)
SYNTH = dict(dense_longest=20.0)      # the dense three's untrimmed clips: 10-20 s (pipeline/synth.py)
STEPS = 3000
DATASETS = dict(avs_mask_size=32)
DEMO_TRAIN = dict(d_model=64, n_heads=2, d_ff=128, dropout=0.0, mask_channels=16, batch_size=16, lr=1e-3,
                  workers=1, prefetch=4, log_every=25, eval_batch_size=32, questions_per_video=4,
                  lr_decay_at=0.75)   # lr x 0.1 once, after 75 % of the steps


def demo_hops() -> dict[str, float]:
    """The demo's feature step of every benchmark whose adapter sets one (Adapter.demo_hop)."""
    from pipeline.datasets import ADAPTERS

    return {name: a.demo_hop for name, a in ADAPTERS.items() if a.demo_hop}


def synthesise(out: Path, seed: int, scale: float, console: Console,
               seconds: dict[str, dict] | None = None) -> dict[str, Path]:
    """Each dataset's synthetic copy; `seconds[name]["synthesise"]` records each one's time."""
    from pipeline.datasets import ADAPTERS
    from pipeline.synth import generate

    roots = {}
    for name, adapter in ADAPTERS.items():
        t0 = time.perf_counter()
        with console.status(f"synthesising {name}"):
            roots |= generate(out, seed, max(2, round(adapter.demo_clips * scale)), only=[name], **SYNTH)
        if seconds is not None:
            seconds.setdefault(name, {})["synthesise"] = round(time.perf_counter() - t0, 1)
    return roots


def extract(roots: dict[str, Path], out: Path, console: Console,
            seconds: dict[str, dict] | None = None) -> dict[str, Path]:
    """Each dataset's store; `seconds[name]["extract"]` records each one's time."""
    from pipeline.config import DatasetsConfig, ExtractConfig
    from pipeline.datasets import extract_dataset, load_dataset

    stores = {}
    for name, root in roots.items():
        t0 = time.perf_counter()
        ds = load_dataset(name, root, DatasetsConfig(**DATASETS))
        with console.status(f"extracting {name} ({len(ds.clips)} clips)"):
            summary, missing = extract_dataset(ds, out / f"{name}.zarr", ExtractConfig(**EXTRACT, hop=demo_hops()))
        if summary.failed or missing:
            raise RuntimeError(f"{name}: {len(summary.failed)} clips failed, {len(missing)} missing")
        console.print(f"  {name}: {len(ds.clips)} clips in {time.perf_counter() - t0:.0f} s")
        if seconds is not None:
            seconds.setdefault(name, {})["extract"] = round(time.perf_counter() - t0, 1)
        stores[name] = out / f"{name}.zarr"
    return stores


def fit(stores: Path, run: Path, steps: int, seed: int, quiet: bool, **overrides) -> Path:
    """Train all tasks jointly; resumes a killed demo run, skips a finished one. `overrides`:
    TrainConfig fields that differ from DEMO_TRAIN (benchmarks/bench_demo_variants.py)."""
    import shutil

    from trainer.checkpoint import load
    from trainer.config import TrainConfig
    from trainer.tasks import BENCHMARKS
    from trainer.train import train

    cfg = TrainConfig(**(DEMO_TRAIN | overrides), stores=str(stores / "{task}.zarr"), max_steps=steps, seed=seed,
                      eval_every=max(1, steps // 4),
                      task_weights={t: b.demo_weight for t, b in BENCHMARKS.items() if b.demo_weight != 1})
    last = run / "checkpoints" / "last.pt"
    if last.is_file():
        if load(last)["step"] >= steps:
            return run
        return train(cfg, run, resume=True, quiet=quiet)
    if run.exists():
        shutil.rmtree(run)          # killed before its first checkpoint: start again
    return train(cfg, run, quiet=quiet)


def summary(results: dict[str, dict], console: Console) -> dict[str, dict[str, tuple[float, float]]]:
    """One line per task and headline metric (its Benchmark's): ours vs chance, in percent."""
    from trainer.tasks import BENCHMARKS

    table = Table(title="demo: test split, ours vs chance (RANDOM-WEIGHT FEATURES, synthetic data)")
    for col in ("task", "metric", "ours", "chance", "ours - chance", "best possible"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for task, r in results.items():
        for key in BENCHMARKS[task].headline:
            ours, chance = 100 * r["metrics"][key], 100 * r["chance"][key]
            ceiling = r.get("ceiling", {}).get(key)
            out.setdefault(task, {})[key] = (ours, chance)
            style = "green" if ours > chance else "red"
            table.add_row(task, key, f"{ours:.1f}", f"{chance:.1f}", f"[{style}]{ours - chance:+.1f}[/]",
                          "" if ceiling is None else f"{100 * ceiling:.1f}")
    console.print(table)
    console.print("best possible: the ground truth's own score where it is below 100 (AVSS averages all 71 "
                  "classes; the synthetic data holds 8 of them and background)")
    return out


def demo(out: Path = Path("demo"), scale: float = 1.0, steps: int = STEPS, seed: int = 0,
         quiet: bool = False) -> dict[str, dict[str, tuple[float, float]]]:
    """The whole job in `out` (synth/, features/, run/); returns {task: {metric: (ours, chance)}}
    in percent on the test splits, and prints `avu report` of the run."""
    from trainer.evaluate import evaluate
    from trainer.report import report

    console = Console(stderr=True, quiet=quiet)
    out = Path(out)
    t0, times, per_dataset = time.perf_counter(), {}, {}
    console.rule("avu demo: synthetic mini-benchmark, RANDOM-WEIGHT encoders")
    roots = synthesise(out / "synth", seed, scale, console, per_dataset)
    times["synthesise"] = time.perf_counter() - t0
    extract(roots, out / "features", console, per_dataset)
    times["extract"] = time.perf_counter() - t0 - sum(times.values())
    run = fit(out / "features", out / "run", steps, seed, quiet)
    times["train"] = time.perf_counter() - t0 - sum(times.values())
    with console.status("evaluating on the test splits"):
        results = evaluate(run, "test", workers=0)
    times["evaluate"] = time.perf_counter() - t0 - sum(times.values())
    report([run], console=Console(quiet=quiet), err_console=console)
    lines = summary(results, console)
    console.print("  ".join(f"{k} {v:.0f} s" for k, v in times.items())
                  + f"  total {time.perf_counter() - t0:.0f} s;  stores in {out / 'features'}, run in {run}")
    (run / "demo.json").write_text(json.dumps({"seconds": times, "datasets": per_dataset, "summary": lines},
                                              indent=1))
    return lines
