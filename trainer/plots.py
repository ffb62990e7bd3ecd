"""Figures for `avu report --plots DIR`, from run directories and feature stores only.

    curves_<task>.png           training loss and validation scores (its Benchmark's headline
                                metrics) per task, runs overlaid
    <task>_per_class.png        per-class scores (eval JSON "per_class"; LLP), runs side by side
    <task>_bars.png             every metric of a Benchmark with `bars` (MUSIC-AVQA: accuracy per
                                question type and group), runs beside the paper
    <run>_<task>.png            a Benchmark with a `figure` (VGG-SS heatmaps, AVSBench masks): for a
                                few clips the frame, the prediction over it and the ground truth

Where a clip's frame cannot be decoded the prediction is drawn alone and the panel title says
so; where the store holds no ground truth the panel says that. matplotlib's object API with the
Agg canvas (no pyplot state), imported only here.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from trainer.rundir import RANDOM_MARK, Result, load_predictions, read_log
from trainer.tasks import BENCHMARKS

LINESTYLES = ("-", "--", ":", "-.")


def _name(res: Result) -> str:
    return f"{res.label} [{RANDOM_MARK}]" if res.random_weights else res.label


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def _smooth(y: np.ndarray) -> np.ndarray:
    """Moving average over ~1/50 of the points (none for short curves)."""
    w = len(y) // 50
    if w < 2:
        return y
    return np.convolve(np.pad(y, (w // 2, w - 1 - w // 2), mode="edge"), np.ones(w) / w, mode="valid")


# ----------------------------------------------------------------------------- curves and bars
def training_curves(results: list[Result], out: Path) -> tuple[list[Path], list[str]]:
    logs, notes = {}, []
    for res in results:
        records, bad = read_log(res.run)
        if not records:
            notes.append(f"run {res.label!r}: no records in metrics.jsonl, no training curves")
        if bad:
            notes.append(f"run {res.label!r}: skipped {bad} unreadable line(s) of metrics.jsonl")
        logs[res.label] = (res, records)
    tasks = list(dict.fromkeys(r["task"] for _, records in logs.values() for r in records))
    written = []
    for task in tasks:
        fig = Figure(figsize=(12, 4.2), layout="constrained")
        ax_loss, ax_val = fig.subplots(1, 2)
        for i, (res, records) in enumerate(logs.values()):
            color = f"C{i % 10}"
            train = [r for r in records if r["kind"] == "train" and r["task"] == task]
            if train:
                x = np.array([r.get("epoch", r.get("step", 0)) for r in train], dtype=float)
                y = np.array([r["loss"] for r in train], dtype=float)
                ax_loss.plot(x, y, color=color, alpha=0.25, lw=0.8)
                ax_loss.plot(x, _smooth(y), color=color, label=_name(res))
            val = [r for r in records if r["kind"] == "val" and r["task"] == task]
            if val:
                present = list(dict.fromkeys(k for r in val for k in r.get("metrics", {})))
                headline = BENCHMARKS[task].headline if task in BENCHMARKS else ()
                keys = [k for k in headline if k in present] or present[:3]
                for j, key in enumerate(keys):
                    pts = [(r.get("epoch", r.get("step", 0)), r["metrics"][key]) for r in val
                           if key in r.get("metrics", {})]
                    ax_val.plot(*zip(*[(x, 100 * v) for x, v in pts]), color=color, marker="o", ms=3,
                                ls=LINESTYLES[j % len(LINESTYLES)], label=f"{_name(res)}: {key}")
        ax_loss.set(title=f"{task}: training loss", xlabel="epoch", ylabel="loss")
        ax_val.set(title=f"{task}: validation", xlabel="epoch", ylabel="score (x100)")
        for ax in (ax_loss, ax_val):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        written.append(_save(fig, out / f"curves_{task}.png"))
    return written, notes


def _grouped_bars(ax, labels: list[str], series: list[tuple[str, list[float | None], dict]]) -> None:
    """Horizontal bars, one group per label, one bar per series (None: no bar)."""
    y = np.arange(len(labels))
    h = 0.8 / max(len(series), 1)
    for i, (name, values, style) in enumerate(series):
        v = np.array([np.nan if x is None else x for x in values], dtype=float)
        ax.barh(y - 0.4 + h * (i + 0.5), v, height=h, label=name, **style)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def per_class_bars(results: list[Result], task: str, out: Path) -> Path | None:
    have = [r for r in results if task in r.evals and r.evals[task].per_class]
    if not have:
        return None
    classes = list(dict.fromkeys(c for r in have for c in r.evals[task].per_class))
    fig = Figure(figsize=(8, 1.2 + 0.3 * len(classes) * max(1, len(have) / 2)), layout="constrained")
    ax = fig.subplots()
    series = [(_name(r), [100 * r.evals[task].per_class[c] if c in r.evals[task].per_class else None
                          for c in classes], {"color": f"C{i % 10}"}) for i, r in enumerate(have)]
    _grouped_bars(ax, classes, series)
    what = BENCHMARKS[task].per_class if task in BENCHMARKS else "per-class score"
    ax.set(title=f"{task}: {what}", xlabel="x100", xlim=(0, 100))
    return _save(fig, out / f"{task}_per_class.png")


def metric_bars(results: list[Result], task: str, out: Path) -> Path | None:
    """Every metric of the task, runs beside the paper's numbers (its Benchmark's rows)."""
    have = [r for r in results if task in r.evals]
    if not have:
        return None
    spec = BENCHMARKS[task]
    paper = {row.key: row.paper[""] for row in spec.rows}
    keys = list(dict.fromkeys([*paper, *(k for r in have for k in r.evals[task].metrics)]))
    series = [("paper (AV-Unified)", [paper.get(k) for k in keys],
               {"color": "0.75", "hatch": "//", "edgecolor": "0.4"})]
    series += [(_name(r), [100 * r.evals[task].metrics[k] if k in r.evals[task].metrics
                           else None for k in keys], {"color": f"C{i % 10}"}) for i, r in enumerate(have)]
    fig = Figure(figsize=(8, 1.5 + 0.28 * len(keys) * len(series)), layout="constrained")
    ax = fig.subplots()
    _grouped_bars(ax, keys, series)
    ax.set(title=f"{task}: {spec.bars}", xlabel="x100", xlim=(0, 100))
    return _save(fig, out / f"{task}_bars.png")


# ----------------------------------------------------------------------------- predictions
def _open_store(res: Result, task: str):
    from pipeline.store import FeatureStore, StoreError

    path = res.run.store_path(task)
    if path is None:
        return None, f"store for {task} not found ({res.run.stores.get(task, 'none in run.json')})"
    try:
        return FeatureStore(path), ""
    except StoreError as err:
        return None, str(err)


def _gt_name(store, kind: str) -> str | None:
    """The store's ground-truth array: a name holding "box" (last axis 4) for heatmaps, "mask"
    with at least (N, H, W) for masks. Shortest name first ("masks" before "masks_rgb")."""
    if store is None:
        return None
    want = "box" if kind == "heatmap" else "mask"
    ok = []
    for name in store.arrays:
        shape = store.group[name].shape
        if want in name.lower() and (shape[-1] == 4 if want == "box" else len(shape) >= 3):
            ok.append(name)
    return min(ok, key=len, default=None)


def _frame(sources: list | None, clip: int, t: int, T: int) -> tuple[np.ndarray | None, str]:
    from pipeline.decode import decode_source

    try:
        source = sources[clip]
        T = len(source["frames"]) if isinstance(source, dict) else T
        frames = decode_source(source, max(T, t + 1)).frames
        return frames[min(t, len(frames) - 1)], ""
    except Exception as err:  # a missing, moved or unreadable source: the prediction goes alone
        return None, str(err) or type(err).__name__


def _overlay(ax, canvas: np.ndarray, layer: np.ndarray | None, kind: str, alpha: float = 0.5) -> None:
    h, w = canvas.shape[:2]
    ax.imshow(canvas)
    if layer is None:
        return
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)  # the canvas's own pixel extent: layers stretch over it
    if kind == "heatmap":
        span = np.ptp(layer)
        norm = (layer - layer.min()) / span if span > 0 else np.zeros_like(layer, dtype=float)
        ax.imshow(norm, cmap="jet", alpha=alpha, extent=extent, interpolation="bilinear")
    elif kind == "binary":
        rgba = np.zeros((*layer.shape, 4))
        rgba[layer.astype(bool)] = (1.0, 0.1, 0.1, 0.55)
        ax.imshow(rgba, extent=extent, interpolation="nearest")
    else:  # class map, background 0 left clear
        from matplotlib import colormaps

        rgba = colormaps["tab20"](layer.astype(int) % 20)
        rgba[..., 3] = np.where(layer > 0, 0.6, 0.0)
        ax.imshow(rgba, extent=extent, interpolation="nearest")


def _boxes(ax, boxes: np.ndarray, w: int, h: int, **style) -> None:
    """Normalised [xmin, ymin, xmax, ymax] boxes; all-zero rows are padding, and boxes of no area
    after clipping (VGG-SS's garbage coordinates) are not drawn, as the metric fills nothing."""
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)
    b = np.clip(b[np.isfinite(b).all(1) & (np.abs(b).sum(1) > 0)], 0, 1)
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    for x0, y0, x1, y1 in b:
        ax.add_patch(Rectangle((x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h,
                               fill=False, **({"edgecolor": "lime", "lw": 2} | style)))


def prediction_figure(res: Result, split: str, task: str, out: Path, n_clips: int = 4
                      ) -> tuple[Path | None, list[str]]:
    pred = load_predictions(res.run, split, task)
    if pred is None:
        return None, [f"run {res.label!r}: no eval/{split}/{task}.npz, no {task} figure"]
    spec = BENCHMARKS[task]
    kind = spec.figure
    clips, values = pred["clip_index"], pred[spec.figure_array]
    picks = np.unique(np.linspace(0, len(clips) - 1, min(n_clips, len(clips))).round().astype(int))
    store, why_store = _open_store(res, task)
    attrs = store.attrs if store is not None else {}
    sources, T = attrs.get("sources"), int(attrs.get("T") or 10)
    gt_name = _gt_name(store, kind)
    notes = [f"run {res.label!r}, {task}: {why_store}; predictions only"] if store is None else []
    if store is not None and gt_name is None:
        notes.append(f"run {res.label!r}, {task}: no ground-truth array in {store.path}")
    fig = Figure(figsize=(10, 3.2 * len(picks)), layout="constrained")
    axes = fig.subplots(len(picks), 3, squeeze=False)
    for row, j in zip(axes, picks):
        clip = int(clips[j])
        t = T // 2 if kind == "heatmap" else 0        # heatmaps: of the middle frame; masks: the first
        layer = values[j] if kind == "heatmap" else values[j][t]
        if kind == "binary":
            layer = layer > 0                          # sigmoid(logit) > 0.5
        frame, why = (_frame(sources, clip, t, T) if sources is not None else (None, why_store))
        canvas = frame if frame is not None else np.full(
            (*(layer.shape if kind != "heatmap" else (224, 224)), 3), 40, np.uint8)
        clip_id = store.clip_ids[clip] if store is not None and clip < len(store) else f"#{clip}"
        why = why if len(why) <= 50 else "…" + why[-49:]
        _overlay(row[0], canvas, None, kind)
        row[0].set_title(f"{clip_id} (t={t})" if frame is not None else
                         f"{clip_id}: frame not readable\n{why}", fontsize=8)
        _overlay(row[1], canvas, layer, kind, alpha=0.5 if frame is not None else 1.0)
        row[1].set_title("prediction" + ("" if frame is not None else " alone (frame not readable)"),
                         fontsize=8)
        gt = store.read(gt_name, clip) if gt_name else None
        if gt is not None and kind == "heatmap":   # boxes over the heatmap too, for comparison
            _boxes(row[1], gt, canvas.shape[1], canvas.shape[0], edgecolor="white", lw=1, ls="--")
        if gt is None:
            row[2].set_title("no ground truth in the store", fontsize=8)
            row[2].imshow(canvas)
        elif kind == "heatmap":
            _overlay(row[2], canvas, None, kind)
            _boxes(row[2], gt, canvas.shape[1], canvas.shape[0])
            row[2].set_title(f"ground truth ({gt_name})", fontsize=8)
        else:
            gt = gt[min(t, len(gt) - 1)] if gt.ndim == 3 else gt
            _overlay(row[2], canvas, gt > 0 if kind == "binary" else gt, kind)
            row[2].set_title(f"ground truth ({gt_name})", fontsize=8)
        for ax in row:
            ax.set_axis_off()
    fig.suptitle(f"{_name(res)}: {task} ({split})", fontsize=10)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", res.label)
    return _save(fig, out / f"{safe}_{task}.png"), notes


# ----------------------------------------------------------------------------- all of them
def write_plots(results: list[Result], split: str, out: Path, n_clips: int = 4) -> tuple[list[Path], list[str]]:
    """Every figure the runs have data for; returns the files written and notes on what was
    skipped. A figure that fails is noted, not fatal."""
    out.mkdir(parents=True, exist_ok=True)
    written, notes = [], []

    def attempt(what: str, make):
        try:
            return make()
        except Exception as err:  # one broken figure must not cost the others or the tables
            notes.append(f"{what}: failed: {type(err).__name__}: {err}")
            return None

    if curves := attempt("training curves", lambda: training_curves(results, out)):
        written += curves[0]
        notes += curves[1]
    for task, spec in BENCHMARKS.items():
        if spec.per_class and any(task in r.evals for r in results):
            if p := attempt(f"{task} per-class scores", lambda: per_class_bars(results, task, out)):
                written.append(p)
            else:
                notes.append(f"no {task} eval JSON has per_class: no per-class figure")
        if spec.bars and (p := attempt(f"{task} metrics", lambda: metric_bars(results, task, out))):
            written.append(p)
    for res in results:
        for task in (t for t, spec in BENCHMARKS.items() if spec.figure and t in res.evals):
            got = attempt(f"run {res.label!r}, {task}",
                          lambda: prediction_figure(res, split, task, out, n_clips))
            if got:
                written += [got[0]] if got[0] else []
                notes += got[1]
    return written, notes
