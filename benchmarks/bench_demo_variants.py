"""The demo's training again on its own features, with other seeds or settings: how much of each
benchmark's margin over chance is the seed, and what UniAV's task experts do.

    python benchmarks/bench_demo_variants.py DEMO_DIR [--variant NAME:field=value,...]...

DEMO_DIR is a finished `avu demo` (its features/ and run/). Each variant trains into
DEMO_DIR/variants/NAME with trainer/demo.py's settings plus its fields (seed=N sets the training
seed; the data stay the demo's), evaluates on the test splits and prints one table: the demo's
run beside every variant, ours - chance per headline metric, and each variant's training time.
Default variants: seed1 (seed=1), experts (task_experts=true), experts-seed1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT = ["seed1:seed=1", "experts:task_experts=true", "experts-seed1:task_experts=true,seed=1"]


def parse(spec: str) -> tuple[str, dict]:
    name, _, fields = spec.partition(":")
    out = {}
    for item in filter(None, fields.split(",")):
        k, _, v = item.partition("=")
        out[k] = json.loads(v) if v not in ("", None) else True
    return name, out


def scores(run: Path) -> tuple[dict, float | None]:
    from trainer.demo import summary
    from trainer.evaluate import evaluate
    from rich.console import Console

    from trainer.tasks import BENCHMARKS

    results = evaluate(run, "test", workers=0)
    lines = summary(results, Console(quiet=True))
    for task, r in results.items():       # a run with classes held out: its headline's seen / unseen too
        for key in BENCHMARKS[task].headline:
            for part in ("seen", "unseen"):
                split = f"{key}_{part}"
                if split in r["metrics"]:
                    lines[task][split] = (100 * r["metrics"][split], 100 * r["chance"].get(split, float("nan")))
    record = run / "demo.json"
    seconds = json.loads(record.read_text())["seconds"]["train"] if record.is_file() else None
    return lines, seconds


def main() -> None:
    import torch
    from rich.console import Console
    from rich.table import Table

    from trainer.demo import STEPS, fit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path)
    ap.add_argument("--variant", action="append", help="NAME:field=value,... (TrainConfig fields; JSON values)")
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    runs = {"demo (seed 0)": (args.demo / "run", None)}
    for spec in args.variant or DEFAULT:
        name, fields = parse(spec)
        seed = fields.pop("seed", 0)
        run = args.demo / "variants" / name
        t0 = time.perf_counter()
        fit(args.demo / "features", run, args.steps, seed, quiet=True, **fields)
        took = time.perf_counter() - t0
        (run / "variant.json").write_text(json.dumps({"seed": seed, **fields, "train_seconds": took}))
        runs[f"{name} ({', '.join([f'seed={seed}'] + [f'{k}={v}' for k, v in fields.items()])})"] = (run, took)
    table = Table(title="demo variants: test split, ours - chance (ours / chance)")
    table.add_column("task / metric")
    results = {}
    for label, (run, took) in runs.items():
        lines, demo_train = scores(run)
        results[label] = lines
        took = demo_train if took is None else took
        table.add_column(label + ("" if took is None else f"\ntrain {took:.0f} s"), justify="right")
    rows = {}
    for lines in results.values():
        for task, metrics in lines.items():
            for key in metrics:
                rows.setdefault((task, key), None)
    for task, key in rows:
        cells = []
        for lines in results.values():
            if key not in lines.get(task, {}):
                cells.append("")
                continue
            ours, chance = lines[task][key]
            cells.append(f"{ours - chance:+.1f} ({ours:.1f}/{chance:.1f})")
        table.add_row(f"{task} {key}", *cells)
    Console(width=200).print(table)
    (args.demo / "variants" / "variants.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
