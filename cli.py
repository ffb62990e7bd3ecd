"""`avu`: the command line. Config stops here: below this file code takes typed settings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

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
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _random_banner() -> None:
    console.print(Panel("[bold]RANDOM-WEIGHT ENCODERS[/]: features from randomly initialised CLIP and "
                        "VGGish. Nothing computed from them says anything about pretrained models.",
                        style="bold yellow", expand=False))


@app.command()
def extract(
    overrides: Optional[List[str]] = OVERRIDES,
    videos: Path = typer.Option(..., "--videos", help="Folder of videos (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Zarr store to create or resume."),
    workers: Optional[int] = typer.Option(None, help="Local Dask workers (0: in this process). "
                                          "With GPUs: one per GPU."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler, "
                                            "e.g. tcp://host:8786."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Use random encoder weights "
                                        "(recorded in the store and shown in every output)."),
    download: bool = typer.Option(False, "--download", help="Fetch missing weights from the official URLs."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry clips that failed before."),
    config: Optional[Path] = typer.Option(None, help="Settings file (default: the shipped stages.yaml)."),
) -> None:
    """Decode videos at 1 fps / 16 kHz, run CLIP and VGGish, cache features in a Zarr store."""
    from pipeline.config import ConfigError, load_stage, parse_overrides
    from pipeline.encoders import WeightsError
    from pipeline.extract import clip_ids_for, list_videos, run_extract
    from pipeline.store import StoreError

    flags = {k: v for k, v in {"workers": workers, "scheduler": scheduler}.items() if v is not None}
    flags.update({k: True for k, v in {"random_weights": random_weights, "download": download,
                                        "retry_failed": retry_failed}.items() if v})
    try:
        cfg = load_stage("extract", config, {**parse_overrides(overrides or []), **flags})
        paths = list_videos(videos)
    except (ConfigError, FileNotFoundError) as err:
        _fail(str(err))
    if not paths:
        _fail(f"{videos}: no video files found")
    if cfg.random_weights:
        _random_banner()
    with _progress() as progress:
        task = progress.add_task("extract", total=len(paths), failed=0, rate="")

        def on_results(results) -> None:
            t = progress.tasks[task]
            progress.update(task, advance=len(results), failed=t.fields["failed"] + sum(not r.ok for r in results),
                            rate=f"{(t.completed + len(results)) / max(t.elapsed or 0, 1e-9):.2f} clips/s")
        try:
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
    if summary.failed or summary.failed_before:
        raise typer.Exit(1)


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
    rate = summary.done / summary.seconds if summary.seconds else 0.0
    table.add_row("time", f"{summary.seconds:.1f} s ({rate:.2f} clips/s)")
    table.add_row("encoders", "[bold yellow]RANDOM WEIGHTS[/]" if summary.random_weights else "pretrained")
    console.print(table)
    for clip_id, reason in list({**summary.failed_before, **summary.failed}.items())[:20]:
        console.print(f"  [red]✗[/] {clip_id}: {reason}")
    if summary.failed_before and not summary.failed:
        console.print("  (pass --retry-failed to try the failed clips again)")


@app.command()
def info(store: Path = typer.Argument(..., help="A feature store made by `avu extract`.")) -> None:
    """What a feature store holds: arrays, provenance, progress and failures."""
    from pipeline.store import DONE, FAILED, FeatureStore, StoreError

    try:
        fs = FeatureStore(store)
    except StoreError as err:
        _fail(str(err))
    attrs, status = fs.attrs, fs.status()
    if fs.random_weights:
        _random_banner()
    table = Table(title=str(store))
    table.add_column("array"), table.add_column("shape"), table.add_column("dtype")
    for name in fs.arrays:
        arr = fs.group[name]
        table.add_row(name, str(arr.shape), str(arr.dtype))
    console.print(table)
    enc = attrs.get("features", {}).get("encoders", {})
    console.print(f"clips {len(fs)}: done {(status == DONE).sum()}, failed {(status == FAILED).sum()}, "
                  f"pending {(status == 0).sum()}; T {attrs.get('T')}, fps {attrs.get('fps')}, "
                  f"{attrs.get('sample_rate')} Hz, patch grid {attrs.get('patch_grid')}")
    console.print(f"encoders: {enc}; avu {attrs.get('avu_version')}")
    for clip_id, reason in list(fs.failures.items())[:20]:
        console.print(f"  [red]✗[/] {clip_id}: {reason}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
