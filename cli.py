"""`avu`: the command line. Config stops here: below this file code takes typed settings."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from pipeline.vocab import TASKS

app = typer.Typer(
    name="avu",
    help="avu: audio-visual scene understanding (AV-Unified). Stage one extracts features; "
         "stage two trains on them.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
OVERRIDES = typer.Argument(None, help="Settings as key=value, overriding stages.yaml (e.g. patch_grid=0).",
                           show_default=False)


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")    # messages quote file contents: no markup
    raise typer.Exit(code)


def _random_banner() -> None:
    console.print(Panel("[bold]RANDOM-WEIGHT ENCODERS[/]: features from randomly initialised CLIP and "
                        "VGGish. Nothing computed from them says anything about pretrained models.",
                        style="bold yellow", expand=False))


@app.command()
def extract(
    overrides: Optional[List[str]] = OVERRIDES,
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of videos (searched recursively)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Instead of --videos: a benchmark, one of "
                                          "ave, llp, vggss, avs-s4, avs-ms3, avss, music-avqa (needs --root)."),
    root: Optional[Path] = typer.Option(None, "--root", help="The benchmark's folder (official layout; see the "
                                        "datasets section of stages.yaml)."),
    out: Path = typer.Option(..., "--out", help="Zarr store to create or resume."),
    workers: Optional[int] = typer.Option(None, help="Local Dask workers (0: in this process). "
                                          "With GPUs: one per GPU."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler, "
                                            "e.g. tcp://host:8786."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Use random encoder weights "
                                        "(recorded in the store and shown in every output)."),
    download: bool = typer.Option(False, "--download", help="Fetch missing weights from the official URLs."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry clips that failed before."),
    repair: bool = typer.Option(False, "--repair", help="Verify every chunk of the done clips (as `avu info "
                                "--verify`) and extract the damaged clips, and rewrite damaged targets, again."),
    config: Optional[Path] = typer.Option(None, help="Settings file (default: the shipped stages.yaml)."),
) -> None:
    """Decode videos at 1 fps / 16 kHz, run CLIP and VGGish, cache features in a Zarr store.

    With --dataset NAME --root DIR: a benchmark's clips, splits, targets and text embeddings.
    Clips whose media are missing are listed in STORE.missing.txt."""
    from pipeline.config import ConfigError, DatasetsConfig, load_stage, parse_overrides
    from pipeline.datasets import DatasetError, extract_dataset, load_dataset, missing_list, present
    from pipeline.encoders import WeightsError
    from pipeline.extract import clip_ids_for, list_videos, run_extract
    from pipeline.store import StoreError

    if (videos is None) == (dataset is None) or (dataset is not None) != (root is not None):
        _fail("give either --videos DIR, or --dataset NAME with --root DIR")
    flags = {k: v for k, v in {"workers": workers, "scheduler": scheduler}.items() if v is not None}
    flags.update({k: True for k, v in {"random_weights": random_weights, "download": download,
                                        "retry_failed": retry_failed, "repair": repair}.items() if v})
    try:
        values = parse_overrides(overrides or [])
        names = {f.name for f in dataclasses.fields(DatasetsConfig)} if dataset else set()
        dcfg = load_stage("datasets", config, {k: v for k, v in values.items() if k in names})
        cfg = load_stage("extract", config, {**{k: v for k, v in values.items() if k not in names}, **flags})
        if dataset:
            ds = load_dataset(dataset, root, dcfg)
            todo, missing = present(ds)
        else:
            paths = list_videos(videos)
            todo = paths
    except (ConfigError, FileNotFoundError, DatasetError) as err:
        _fail(str(err))
    if not todo and videos:
        _fail(f"{videos}: no video files found")
    if not todo:
        where = missing[0].source if missing else root
        _fail(f"{dataset}: none of the {len(missing)} clips' media found (e.g. {where}); check --root and the "
              f"datasets section of stages.yaml")
    if dataset:
        _print_dataset(ds, len(todo), missing, missing_list(out))
    if cfg.random_weights:
        _random_banner()
    with _progress() as progress:
        task = progress.add_task("extract", total=len(todo), failed=0, rate="")

        def on_results(results) -> None:
            t = progress.tasks[task]
            progress.update(task, advance=len(results), failed=t.fields["failed"] + sum(not r.ok for r in results),
                            rate=f"{(t.completed + len(results)) / max(t.elapsed or 0, 1e-9):.2f} clips/s")
        try:
            if dataset:
                summary, _ = extract_dataset(ds, out, cfg, on_results)
            else:
                summary = run_extract(paths, clip_ids_for(paths, videos), out, cfg, on_results)
        except (WeightsError, StoreError, ValueError) as err:
            progress.stop()
            _fail(str(err))
        except KeyboardInterrupt:
            progress.stop()
            console.print(f"[yellow]interrupted[/]: finished clips are kept in {out}; "
                          "run the same command again to resume.")
            raise typer.Exit(130)
    _print_summary(summary, out)
    if summary.failed or summary.failed_before or summary.damaged:
        raise typer.Exit(1)


def _print_dataset(ds, n_present: int, missing: list, listing: Path) -> None:
    splits = ", ".join(f"{s} {len(ds.split(s))}" for s in ds.split_names())
    console.print(f"[bold]{ds.name}[/]: {len(ds.clips)} clips ({splits}), T = {ds.T}; media found for {n_present}")
    if missing:
        console.print(f"[yellow]missing media: {len(missing)} clips[/] (listed in {listing}), "
                      f"e.g. {missing[0].clip_id}")
    quirks = ", ".join(f"{k} {v}" for k, v in ds.quirks.items() if v)
    if quirks:
        console.print(f"quirks handled: {quirks}")


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the datasets into (one folder each)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same files."),
    clips: int = typer.Option(16, "--clips", help="Training clips per dataset (val and test get half)."),
    dataset: Optional[List[str]] = typer.Option(None, "--dataset", help="Only these datasets (repeat the "
                                                "option); default all ten."),
    dense_longest: float = typer.Option(60.0, "--dense-longest", help="Longest untrimmed clip of the dense "
                                        "benchmarks, 10-60 s (the demo uses 20)."),
) -> None:
    """Generate the built-in synthetic mini-benchmark: all ten datasets (every adapter of
    pipeline/datasets) in their official layouts, or those named by --dataset.

    Seeded and deterministic; a dataset folder that already exists under --out is kept."""
    from pipeline.synth import check_options, generate

    try:
        check_options(dataset, dense_longest)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    with console.status("writing the synthetic datasets"):
        roots = generate(out, seed, clips, only=list(dataset) if dataset else None, dense_longest=dense_longest)
    console.print(f"{len(roots)} datasets in {out}; extract them with:")
    for name, root in roots.items():
        typer.echo(f"  avu extract --dataset {name} --root {root} --out {Path(out) / (name + '.zarr')}")


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TextColumn("[red]failed {task.fields[failed]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=console, transient=False,
    )


def _print_summary(summary, out: Path) -> None:
    table = Table(title=f"extract → {out}", show_header=False)
    table.add_row("clips", str(summary.total))
    table.add_row("done now", str(summary.done))
    table.add_row("skipped (done before)", str(summary.skipped))
    table.add_row("failed", f"[red]{len(summary.failed)}[/]" if summary.failed else "0")
    if summary.failed_before:
        table.add_row("failed before (not retried)", f"[red]{len(summary.failed_before)}[/]")
    table.add_row("ffmpeg fallbacks", str(summary.ffmpeg_fallbacks))
    table.add_row("audio shorter than picture", _count(summary.short_audio, "padded with silence"))
    table.add_row("picture shorter than audio", _count(summary.short_picture, "last frame repeated"))
    table.add_row("cut (longer than T or max_seconds)", _count(summary.cut, "the rest not kept"))
    if summary.audio_only:
        table.add_row("audio only (no picture)", str(summary.audio_only))
    if summary.hop != 1:
        table.add_row("feature step", f"{summary.hop:g} s")
    if not summary.patches:
        table.add_row("patch tokens", "not stored (setting patches)")
    rate = summary.done / summary.seconds if summary.seconds else 0.0
    table.add_row("time", f"{summary.seconds:.1f} s ({rate:.2f} clips/s)")
    table.add_row("encoders", "[bold yellow]RANDOM WEIGHTS[/]" if summary.random_weights else "pretrained")
    console.print(table)
    for clip_id, reason in list({**summary.failed_before, **summary.failed}.items())[:20]:
        console.print(f"  [red]✗[/] {clip_id}: {reason}")
    if summary.failed_before and not summary.failed:
        console.print("  (pass --retry-failed to try the failed clips again)")
    for what, clips in (("repaired", summary.repaired), ("damaged", summary.damaged)):
        if clips:
            console.print(f"[yellow]{what}: {len(clips)}[/]" + (" (damaged chunks found and extracted again)"
                          if what == "repaired" else f" done clips with missing or damaged chunks (run the same "
                          f"command with --repair; `avu info --verify {out}` lists them)"))
            for clip_id, reason in list(clips.items())[:20]:
                console.print(f"  [yellow]![/] {clip_id}: {reason}")
    for clip_id, note in list({**summary.short_audio, **summary.short_picture}.items())[:10]:
        console.print(f"  [yellow]~[/] {clip_id}: {note}")
    for clip_id, note in list(summary.cut.items())[:10]:
        console.print(f"  [yellow]cut[/] {clip_id}: {escape(note)}")


def _count(clips: dict, what: str) -> str:
    return f"[yellow]{len(clips)}[/] ({what})" if clips else "0"


@app.command()
def info(
    store: Path = typer.Argument(..., help="A feature store made by `avu extract`."),
    verify: bool = typer.Option(False, "--verify", help="Read every chunk of every done clip and check it against "
                                "the byte count and CRC-32 recorded when it was written; list the damaged ones "
                                "(stdout: clip, array, what) and exit 1 if any."),
) -> None:
    """What a feature store holds: arrays, provenance, progress, failures and damage.

    Without --verify, a quick check: every chunk file of every done clip is there, of the size
    recorded when it was written. Exit 1 when a done clip is damaged."""
    import time

    from pipeline.store import DONE, FAILED, FeatureStore, StoreError

    try:
        fs = FeatureStore(store)
        len(fs)                                        # no clip_ids (half-made): StoreError
        attrs, status = fs.attrs, fs.status()
    except StoreError as err:
        _fail(str(err))
    if fs.random_weights:
        _random_banner()
    table = Table(title=str(store))
    table.add_column("array"), table.add_column("shape"), table.add_column("dtype")
    for name in fs.arrays:
        arr = fs.group[name]
        table.add_row(name, str(arr.shape), str(arr.dtype))
    console.print(table)
    enc = attrs.get("features", {}).get("encoders", {})
    seconds = f"T {attrs.get('T')}" if attrs.get("T") != 0 else \
        f"T 0 (each clip its own length, up to max_seconds {attrs.get('max_seconds')})"
    console.print(f"clips {len(fs)}: done {(status == DONE).sum()}, failed {(status == FAILED).sum()}, "
                  f"pending {(status == 0).sum()}; {seconds}, fps {attrs.get('fps')} (step {fs.hop:g} s), "
                  f"{attrs.get('sample_rate')} Hz, patch grid {attrs.get('patch_grid')}"
                  f"{'' if fs.has_patches else ' (no patch tokens stored: extracted with patches false)'}, "
                  f"encoders in {attrs.get('features', {}).get('precision', 'fp32')}")
    console.print(f"encoders: {enc}; avu {attrs.get('avu_version')}")
    console.print(f"audio only (no picture; no visual chunks): {len(fs.audio_only())} done clips")
    _print_uneven(fs, status == DONE)
    cut = fs.cut
    limit = f"T {attrs.get('T')}" if attrs.get("T") else f"max_seconds {attrs.get('max_seconds')}"
    example = ", ".join(f"{c} (picture {n} s)" for c, n in list((cut or {}).items())[:3])
    console.print(f"cut at {limit}: " + ("not recorded (a store made before avu recorded it)" if cut is None else
                                         f"{len(cut)} clips" + (f", e.g. {example}" if cut else "")))
    for clip_id, reason in list(fs.failures.items())[:20]:
        console.print(f"  [red]✗[/] {clip_id}: {reason}")
    t0 = time.perf_counter()
    try:
        damage = fs.check(full=verify)
    except StoreError as err:
        _fail(str(err))
    seconds = time.perf_counter() - t0
    unrecorded = [n for n in fs.per_clip_arrays() if fs.records(n) is None]
    if unrecorded:
        console.print(f"[yellow]no chunk records[/] for {', '.join(unrecorded)} (a store made before avu recorded "
                      "them): a missing feature chunk and a chunk that does not decode are found, changed bytes "
                      "that still decode and a missing all-zero target chunk are not")
    what = "verify (every chunk read, CRC-32 against the records)" if verify else \
        "quick check (chunk files present, of the recorded size; --verify reads them)"
    clips = sorted({d.index for d in damage if d.index >= 0})
    console.print(f"{what}: {len(clips)} damaged done clip(s), {len(damage)} damaged chunk(s) or arrays "
                  f"({seconds:.1f} s)")
    if damage:
        for d in damage:
            typer.echo(f"{d.clip_id or '-'}\t{d.array}\t{d.reason}")
        console.print("[red]damaged[/]: the same `avu extract` command with --repair extracts these clips again "
                      "(training refuses this store until then)")
        raise typer.Exit(1)


def _print_uneven(fs, done) -> None:
    """Done clips whose audio and picture differ in real seconds (audio_length, visual_length)."""
    import numpy as np

    if not {"audio_length", "visual_length"} <= set(fs.arrays):
        console.print("real seconds per modality: not recorded (a store made before avu recorded them)")
        return
    audio, visual = fs.read("audio_length", slice(None)), fs.read("visual_length", slice(None))
    known = done & (audio >= 0) & (visual >= 0)
    for label, which in (("audio shorter than picture", known & (audio < visual)),
                         ("picture shorter than audio", known & (visual < audio) & (visual > 0))):
        idx = np.flatnonzero(which)
        example = ", ".join(f"{fs.clip_ids[i]} (audio {audio[i]} s, picture {visual[i]} s)" for i in idx[:3])
        console.print(f"{label}: {len(idx)} clips" + (f", e.g. {example}" if len(idx) else ""))
    if (done & ~known).any():
        console.print(f"real seconds per modality not recorded for {(done & ~known).sum()} clips done before")


@app.command()
def report(
    runs: List[Path] = typer.Argument(..., help="Run directories written by avu train / avu eval."),
    split: str = typer.Option("test", help="Which eval/<split> to report."),
    fmt: str = typer.Option("rich", "--format", help="rich | markdown | csv | json"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write PNG figures to this folder."),
) -> None:
    """Our scores beside the paper's Tables I-VI (and optional figures)."""
    from trainer.report import report as make_report

    raise typer.Exit(make_report(runs, split, fmt, plots, err_console=console))


@app.command()
def train(
    overrides: Optional[List[str]] = OVERRIDES,
    out: Path = typer.Option(..., "--out", help="Run directory to create (or, with --resume, continue)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help=f"all, or a comma list of: {', '.join(TASKS)}. "
                                        "One task alone is the paper's single-task (w/o jt) run."),
    stores: Optional[str] = typer.Option(None, "--stores", help="Each task's store, with {task} in the path "
                                         "(default from stages.yaml: features/{task}.zarr)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoints/last.pt "
                                "(none yet: start it again from step 0, with its recorded settings)."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (DistributedDataParallel via "
                              "torchrun; one per GPU). For several machines call torchrun yourself."),
    config: Optional[Path] = typer.Option(None, help="Settings file (default: the shipped stages.yaml)."),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress display."),
) -> None:
    """Train AV-Unified (MS-STPM) on the cached features of one or more tasks, jointly.

    The run directory gets config.yaml, run.json, metrics.jsonl and checkpoints/ (last, best,
    best-<task>). Ctrl-C or SIGTERM (to the process or its group) finishes the step and saves;
    --resume continues as if never stopped."""
    from pipeline.config import ConfigError
    from pipeline.store import StoreError
    from trainer.train import train as run_train

    try:
        cfg = train_config(overrides, config, out if resume else None, tasks=tasks, stores=stores)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    if nproc > 1:
        import subprocess

        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "cli", "train", "--out", str(out), *(["--resume"] if resume else []),
               *(["--config", str(config)] if config else []), *(["--quiet"] if quiet else []),
               *(f"{k}={v}" for k, v in (("tasks", tasks), ("stores", stores)) if v is not None),
               *(overrides or [])]
        console.print(f"launching: {' '.join(cmd)}")
        raise typer.Exit(subprocess.call(cmd))
    try:
        run = run_train(cfg, out, resume=resume, quiet=quiet)
    except (FileNotFoundError, FileExistsError, ValueError, StoreError) as err:   # CheckpointError too
        _fail(str(err))
    except KeyboardInterrupt:   # a second Ctrl-C: stopped at once, without saving this step
        console.print(f"[yellow]interrupted[/]: stopped at once; `avu train --out {out} --resume` continues "
                      "from the last checkpoint written")
        raise typer.Exit(130)
    console.print(f"run in {run}; evaluate it with: avu eval {run} --split test")


def train_config(overrides: list[str] | None = None, config: Path | None = None, resume_from: Path | None = None,
                 **flags) -> "TrainConfig":  # noqa: F821
    """Stage two's settings: stages.yaml's train section (or, resuming, the run's config.yaml) +
    key=value overrides + flags that are not None (--tasks, --stores)."""
    from pipeline.config import build, load_stage, parse_overrides
    from trainer.config import TrainConfig
    from trainer.rundir import recorded_settings

    values = {**parse_overrides(overrides or []), **{k: v for k, v in flags.items() if v is not None}}
    if resume_from is not None and (Path(resume_from) / "config.yaml").is_file():
        saved = {k: v for k, v in recorded_settings(resume_from).items() if k != "name"}
        saved["tasks"] = ",".join(saved["tasks"]) if isinstance(saved["tasks"], list) else saved["tasks"]
        return build(TrainConfig, {**saved, **values}, f"{resume_from}/config.yaml")
    return load_stage("train", config, values, cls=TrainConfig)


@app.command()
def settings() -> None:
    """Print every setting of every stage with its default and what it does: the settings file
    (the shipped stages.yaml is this output; copy it, uncomment what you change, --config FILE)."""
    print(settings_text(), end="")


def settings_text() -> str:
    from pipeline.config import STAGES
    from pipeline.config import settings_text as text
    from trainer.config import TrainConfig

    return text({**STAGES, "train": TrainConfig})


@app.command("eval")
def eval_(
    path: Path = typer.Argument(..., help="A run directory, or a predictions file (eval/<split>/<task>.npz) "
                                "to rescore."),
    split: str = typer.Option("test", help="The split to evaluate (a run directory only)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma list of tasks (default: the run's)."),
    checkpoint: str = typer.Option("best", help="best | last | task (each task its own best) | a path."),
    store: Optional[Path] = typer.Option(None, help="A predictions file's store (default: from its run)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    batch_size: int = typer.Option(32, help="Clips per forward pass."),
    workers: int = typer.Option(0, help="Loader processes."),
) -> None:
    """Predict with a trained run and score each task with the official metrics.

    Writes eval/<split>/<task>.npz (the predictions) and <task>.json (metrics and chance), which
    `avu report` reads. Given a .npz, scores it again without the model."""
    from pipeline.store import StoreError
    from trainer.evaluate import evaluate
    from trainer.rundir import RunDirError

    if not path.exists():
        _fail(f"{path}: no such run directory or predictions file")
    try:
        with console.status(f"evaluating {path} on {split}"):
            results = evaluate(path, split, tasks.split(",") if tasks else None, checkpoint, device, batch_size,
                               workers, store=store)
    except (FileNotFoundError, RunDirError, StoreError, ValueError, KeyError) as err:
        _fail(str(err))
    table = Table(title=f"eval {path} ({split})")
    for col in ("task", "n", "metric", "ours", "chance"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, r in results.items():
        if "skipped_split" in r:
            table.add_row(task, "0", f"no {split} split", "", "")
            continue
        for k, v in r["metrics"].items():
            c = r.get("chance", {}).get(k)
            table.add_row(task, str(r["n"]), k, f"{100 * v:.2f}", "" if c is None else f"{100 * c:.2f}")
    Console().print(table)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="A run directory written by avu train."),
    videos: List[Path] = typer.Argument(..., help="Video files, or folders of videos (searched recursively)."),
    ask: Optional[List[str]] = typer.Option(None, "--ask", help="A question for the MUSIC-AVQA head (any "
                                            "number of --ask); none: no question is asked."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma list of the run's tasks (default: all it "
                                        "trained)."),
    checkpoint: str = typer.Option("best", help="best | last | task (each task its own best) | a path."),
    out: Path = typer.Option(Path("predictions"), "--out", help="Folder: <out>/<video stem>/ per video."),
    clip_weights: Optional[str] = typer.Option(None, "--clip-weights", help="The CLIP weight file, where it is "
                                               "not where the stores' settings say (checked by SHA-256)."),
    vggish_weights: Optional[str] = typer.Option(None, "--vggish-weights", help="The VGGish weight file, likewise."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """A trained run on your own videos, any length: every head's output per second and per
    event, as predictions.json, overlay PNGs and a self-contained index.html per video.

    Each video is extracted exactly as the run's stores were made (same encoders, weight files
    checked by SHA-256, patch grid, precision, step)."""
    import time

    from pipeline.encoders import WeightsError
    from pipeline.store import StoreError
    from trainer.page import write_index
    from trainer.predict import PredictError, list_inputs, output_folders, predict_video, prepare
    from trainer.rundir import RunDirError

    t0 = time.perf_counter()
    try:
        files = list_inputs(videos)
        with console.status(f"loading {run}"):
            prep = prepare(run, tasks.split(",") if tasks else None, checkpoint, ask or [], clip_weights,
                           vggish_weights, device)
    except (PredictError, WeightsError, RunDirError, StoreError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    random = prep.features.get("random_weights") or prep.run.random_weights
    if random:
        _random_banner()
    for w in prep.warnings:
        console.print(f"[yellow]note[/]: {escape(w)}")
    docs, failed = [], {}
    with _progress() as progress:
        bars = {}

        def tick(what: str, done: int, total: int) -> None:
            if what not in bars:
                bars[what] = progress.add_task(what, total=total, failed=0, rate="")
            progress.update(bars[what], completed=done, total=total)

        for video, folder in zip(files, output_folders(files, out)):
            bars.clear()
            progress.console.print(f"[bold]{escape(str(video))}[/]")
            try:
                docs.append((folder, predict_video(prep, video, folder, tick)))
            except (PredictError, StoreError, ValueError) as err:
                failed[str(video)] = str(err)
                progress.console.print(f"  [red]✗[/] {escape(str(err))}")
            except KeyboardInterrupt:
                progress.stop()
                console.print("[yellow]interrupted[/]: finished videos are kept")
                raise typer.Exit(130)
    if len(docs) > 1:
        write_index(out, docs)
    _print_predict_summary(docs, failed, out, time.perf_counter() - t0, random)
    if failed or not docs:
        raise typer.Exit(1)


def _print_predict_summary(docs: list, failed: dict, out: Path, seconds: float, random: bool) -> None:
    table = Table(title=f"predict → {out}")
    for col in ("video", "seconds", "tasks", "events", "overlay PNGs", "time (s)"):
        table.add_column(col)
    for folder, doc in docs:
        events = sum(len(t["events"]) for t in doc["tasks"].values())
        pngs = sum(len(v) for v in doc["files"]["overlays"].values())
        table.add_row(escape(doc["video"]["name"]), f'{doc["video"]["duration"]:.1f}', ", ".join(doc["tasks"]),
                      str(events), str(pngs), f'{doc["timing"]["total_seconds"]:.1f}')
    console.print(table)
    for folder, _ in docs:
        console.print(f"  {escape(str(folder / 'predictions.json'))}", soft_wrap=True)
        console.print(f"  {escape(str(folder / 'index.html'))}", soft_wrap=True)
    if len(docs) > 1:
        console.print(f"index of all videos: {out / 'index.html'}")
    for video, why in failed.items():
        console.print(f"  [red]✗[/] {escape(video)}: {escape(why)}")
    console.print(f"{len(docs)} video(s) in {seconds:.1f} s" + (" — [bold yellow]RANDOM-WEIGHT ENCODERS[/]" if random else ""))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for synth/, features/ and run/."),
    scale: float = typer.Option(1.0, help="Multiplies the clips per dataset."),
    steps: Optional[int] = typer.Option(None, help="Training steps (default: trainer/demo.py STEPS)."),
    seed: int = typer.Option(0, help="Random seed (data and training)."),
) -> None:
    """The whole job on the built-in synthetic mini-benchmark (what `make demo` runs).

    Synthesise all ten datasets (every adapter of pipeline/datasets), extract them (RANDOM-WEIGHT
    encoders), train all ten tasks jointly, evaluate on the test splits and print the report,
    with chance beside every number. Re-running skips what is done."""
    from trainer.demo import demo as run_demo

    _random_banner()
    lines = run_demo(out, scale, seed=seed, **({} if steps is None else {"steps": steps}))
    below = [f"{t} {k}" for t, scores in lines.items() for k, (ours, chance) in scores.items() if ours <= chance]
    if below:
        console.print(f"[yellow]not above chance:[/] {', '.join(below)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
