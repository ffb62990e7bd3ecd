"""The run directory: what training and `avu eval` write, and what `avu report` reads.

    <run>/config.yaml               the resolved config; includes `tasks: [ave, llp, ...]` and `name`
    <run>/run.json                  {"name": str, "tasks": [...], "random_weights": bool,
                                     "joint": bool, "ave_supervision": "full" | "weak",
                                     "stores": {task: store path}}
    <run>/metrics.jsonl             one JSON object per line, either
                                    {"kind": "train", "step": int, "epoch": float, "task": str,
                                     "loss": float}
                                    {"kind": "val", "step": int, "epoch": float, "task": str,
                                     "metrics": {key: fraction}}
    <run>/eval/<split>/<task>.json  {"task", "split", "n": int, "random_weights": bool,
                                     "metrics": {key: fraction}, "chance": {key: fraction},
                                     "per_class": {class name: fraction}}   (per_class optional;
                                     LLP: per-class segment-level F1 of audio-visual events)
    <run>/eval/<split>/<task>.npz   predictions (trainer/evaluate.py); clip indices refer to the
                                    store; figures draw its Benchmark's `figure_array`

Task names are benchmark names (trainer.tasks.BENCHMARKS). Every score in a run directory is a fraction in [0, 1]
with the keys of its Benchmark's `metric_keys`; reports multiply by 100. A relative store path is looked up
against the run directory first, then the working directory. Lines of metrics.jsonl that do
not parse (a run killed mid-write) are skipped and counted.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.tasks import BENCHMARKS

RANDOM_MARK = "RANDOM-WEIGHT FEATURES"


class RunDirError(RuntimeError):
    """A run directory is missing, incomplete or not in the format above."""


@dataclass(frozen=True)
class Run:
    path: Path
    name: str
    tasks: tuple[str, ...]
    random_weights: bool
    joint: bool
    ave_supervision: str = "full"
    stores: dict[str, str] = field(default_factory=dict)

    def store_path(self, task: str) -> Path | None:
        """The task's feature store, or None if run.json names none or it is not there."""
        if task not in self.stores:
            return None
        p = Path(self.stores[task]).expanduser()
        for candidate in ([p] if p.is_absolute() else [self.path / p, p]):
            if candidate.exists():
                return candidate
        return None


@dataclass(frozen=True)
class TaskEval:
    task: str
    split: str
    n: int
    random_weights: bool
    metrics: dict[str, float]
    chance: dict[str, float]
    per_class: dict[str, float]
    path: Path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return data


def load_run(path: Path | str) -> Run:
    """The run's run.json, checked."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    if not (path / "run.json").is_file():
        raise RunDirError(f"{path}: not an avu run directory (no run.json; training writes it)")
    d = _read_json(path / "run.json")
    missing = [k for k in ("name", "tasks", "random_weights", "joint") if k not in d]
    if missing:
        raise RunDirError(f"{path / 'run.json'}: missing {', '.join(missing)}")
    unknown = [t for t in d["tasks"] if t not in BENCHMARKS]
    if unknown:
        raise RunDirError(f"{path / 'run.json'}: unknown tasks {unknown}; known: {', '.join(BENCHMARKS)}")
    supervision = d.get("ave_supervision", "full")
    if supervision not in ("full", "weak"):
        raise RunDirError(f"{path / 'run.json'}: ave_supervision must be full or weak, not {supervision!r}")
    return Run(path, str(d["name"]), tuple(d["tasks"]), bool(d["random_weights"]), bool(d["joint"]),
               supervision, dict(d.get("stores", {})))


def write_settings(out: Path, resolved: dict) -> None:
    """config.yaml: the run's resolved settings (TrainConfig as a dict, tasks a list, name)."""
    import yaml

    (Path(out) / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))


def recorded_settings(out: Path) -> dict:
    """The settings a run's config.yaml records (a run resumed without a checkpoint, or with
    the settings it was started with); FileNotFoundError / ValueError name the file."""
    import yaml

    path = Path(out) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{out}: nothing to resume (no checkpoints/last.pt and no config.yaml): "
                                f"start the run without --resume")
    try:
        recorded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not readable YAML ({err})") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("tasks"), list):
        raise ValueError(f"{path}: not a run's config.yaml (no list of tasks)")
    return recorded


def read_config(run: Run) -> dict:
    """config.yaml as a dict ({} if absent)."""
    import yaml

    p = run.path / "config.yaml"
    return (yaml.safe_load(p.read_text()) or {}) if p.is_file() else {}


def eval_splits(run: Run) -> list[str]:
    """Splits with at least one eval JSON."""
    root = run.path / "eval"
    return sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*.json"))) \
        if root.is_dir() else []


def _fractions(values, path: Path, what: str) -> dict[str, float]:
    if not isinstance(values, dict):
        raise RunDirError(f"{path}: {what} must be an object of fractions")
    for k, v in values.items():
        if not isinstance(v, (int, float)) or (math.isfinite(v) and not 0 <= v <= 1):
            raise RunDirError(f"{path}: {what}[{k!r}] = {v!r} is not a fraction in [0, 1] "
                              "(scores are stored unscaled; reports multiply by 100)")
    return {k: float(v) for k, v in values.items()}


def _task_eval(path: Path, split: str) -> TaskEval:
    d = _read_json(path)
    task = d.get("task", path.stem)
    if task != path.stem or d.get("split", split) != split:
        raise RunDirError(f"{path}: holds task {task!r}, split {d.get('split')!r}; "
                          f"its place says {path.stem!r}, {split!r}")
    if "metrics" not in d:
        raise RunDirError(f"{path}: no \"metrics\"")
    return TaskEval(task, split, int(d.get("n", 0)), bool(d.get("random_weights", False)),
                    _fractions(d["metrics"], path, "metrics"),
                    _fractions(d.get("chance") or {}, path, "chance"),
                    _fractions(d.get("per_class") or {}, path, "per_class"), path)


def load_evals(run: Run, split: str) -> dict[str, TaskEval]:
    """{task: its eval/<split>/<task>.json}; raises RunDirError naming what is missing."""
    files = sorted((run.path / "eval" / split).glob("*.json"))
    if not files:
        others = [s for s in eval_splits(run) if s != split]
        hint = f"; it has metrics for split {', '.join(others)} (--split)" if others else ""
        log = run.path / "metrics.jsonl"
        state = " Training has logged to metrics.jsonl." if log.is_file() else ""
        raise RunDirError(f"run {run.name!r} ({run.path}) has no metrics for split {split!r}: "
                          f"no {run.path / 'eval' / split}/<task>.json{hint}.{state} "
                          f"Make them with: avu eval {run.path}")
    return {f.stem: _task_eval(f, split) for f in files}


def load_predictions(run: Run, split: str, task: str) -> dict[str, np.ndarray] | None:
    """The arrays of eval/<split>/<task>.npz, or None if there is none."""
    p = run.path / "eval" / split / f"{task}.npz"
    if not p.is_file():
        return None
    with np.load(p) as z:
        return {k: z[k] for k in z.files}


def read_log(run: Run) -> tuple[list[dict], int]:
    """The train/val records of metrics.jsonl and the number of lines skipped as unreadable."""
    p = run.path / "metrics.jsonl"
    if not p.is_file():
        return [], 0
    records, bad = [], 0
    for line in p.read_text().splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(r, dict) and r.get("kind") in ("train", "val") and "task" in r:
            records.append(r)
        else:
            bad += 1
    return records, bad


@dataclass(frozen=True)
class Result:
    """A run with its eval JSONs of one split; label is its unique display name."""
    run: Run
    label: str
    evals: dict[str, TaskEval]

    @property
    def random_weights(self) -> bool:
        return self.run.random_weights or any(e.random_weights for e in self.evals.values())

    def has(self, task: str) -> bool:
        return task in self.run.tasks or task in self.evals
