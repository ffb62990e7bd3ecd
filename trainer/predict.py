"""`avu predict`: a trained run on anyone's video, any length, with a page to look at.

    videos = predict(Path("runs/joint"), [Path("my.mp4")], Path("predictions"), asks=["Is the violin playing?"])

Each video is extracted exactly as the run's stores were made: the stores' extract settings
(attrs["config"]) and feature provenance (attrs["features"]) give the CLIP and VGGish models,
patch grid, precision, sample rate and step, once per step, with patch tokens where a store of
that step holds them (a step whose stores hold none, the dense ones by default, is extracted
without); weight files must have the SHA-256 the stores
recorded (`encoder_config`); random-weight stores get the same seeded random encoders, and
every output says so. Extraction is stage one's own (`run_extract` with T = 0, into
DIR/<stem>/features.zarr, which a rerun reuses), so nothing here re-implements it.

Any length: a head trained on clips of T steps (its store's T: AVE and LLP 10, S4 / MS3 5,
MUSIC-AVQA 60) runs on consecutive windows [0, T), [T, 2T), ... (`windows`); a last window
shorter than T is moved back to end at the video's end, [n - T, n), and gives only its steps
past the previous window; a video shorter than T is one window. Each step's outputs come
from the one window that owns it, so the stitched arrays are per step on the video's own
time axis (`run_heads`). Events (AVE, LLP) are runs over the stitched steps, so one that
crosses a seam is one event. VGG-SS heatmaps come for every step (the head's audio and
patch streams are per step: `ssl_heatmaps`), S4 / MS3 / AVSS masks for every step.
MUSIC-AVQA: each --ask question is embedded by the stores' CLIP text encoder; its answer
probabilities are averaged over the windows, weighted by their steps.

Times: step k covers [k * hop, (k + 1) * hop) seconds (the store's attrs["hop"], 1.0 when absent).
A benchmark is predicted by the kind of its head (HEAD_KINDS, by head module, never by the
benchmark's name: a benchmark stays one unit): `collect` reads the kind's arrays from the head's
outputs, DESCRIBE turns them into seconds and events. A new head (the dense one, whose events
come per window in seconds) is one HEAD_KINDS entry, one `collect` branch (its events offset by
the window's start) and one DESCRIBE function; the JSON's `events` already take it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import ExtractConfig, resolve_path
from pipeline.encoders import WeightsError, file_sha256
from pipeline.extract import FEATURE_DEFAULTS, VIDEO_SUFFIXES, VIDEOS
from pipeline.store import FeatureStore
from trainer.data import TaskStore, open_task, prompt_row, to_device
from trainer.evaluate import pick_checkpoint
from trainer.metrics import llp_predict
from trainer.predict_schema import SCHEMA_NAME, SCHEMA_VERSION
from trainer.rundir import RANDOM_MARK, load_run
from trainer.runtime import autocast, load_model, resolve_device
from trainer.tasks import BENCHMARKS, HEADS
from trainer.tasks import ave as ave_head
from trainer.tasks import avqa as avqa_head
from trainer.tasks import avs as avs_head
from trainer.tasks import dense as dense_head
from trainer.tasks import llp as llp_head
from trainer.tasks import vggss as vggss_head

MAX_SECONDS = 6 * 3600     # the longest video predicted (stage one's cap, max_seconds)
BATCH_WINDOWS = 8          # windows per forward pass
DENSE_EVENT_SCORE = 0.3    # dense heads: a detection is an event of the timeline from this score on
MIN_AREA = 0.01            # AVSS: a class is an event where it covers at least this fraction of the frame
# settings of the stores' features that the videos must share (T and max_seconds are per store)
SAME_FEATURES = ("sample_rate", "clip_model", "patch_grid", "random_weights", "precision", "encoders")


class PredictError(ValueError):
    """A run, its stores or a video cannot be predicted; the message says what and where."""


# ----------------------------------------------------------------------------- the encoders
def store_features(fs: FeatureStore) -> dict:
    """The store's feature settings and encoder provenance, defaults filled in."""
    features = fs.attrs.get("features")
    if not features or "encoders" not in features:
        raise PredictError(f"{fs.path}: records no feature provenance (attrs['features']['encoders']): it was not "
                           f"made by `avu extract`, so its features cannot be reproduced on a new video")
    return {**FEATURE_DEFAULTS, **features}


def encoder_config(fs: FeatureStore, clip_weights: str | None = None, vggish_weights: str | None = None,
                   device: str = "auto") -> ExtractConfig:
    """Stage one's settings that made the store, for one video of any length in this process.

    Weight files are checked against the SHA-256 the store recorded: a missing or different
    file raises WeightsError naming the file, the expected hash and the setting."""
    features, recorded = store_features(fs), dict(fs.attrs.get("config") or {})
    known = {f.name for f in dataclasses.fields(ExtractConfig)}
    values = {k: v for k, v in recorded.items() if k in known}
    values.update({k: features[k] for k in ("sample_rate", "clip_model", "patch_grid", "random_weights", "precision")
                   if k in features})
    values.update(T=0, max_seconds=MAX_SECONDS, workers=0, scheduler=None, retry_failed=False, repair=False,
                  download=False, device=device)
    values["hop"] = {VIDEOS: float(fs.attrs.get("hop", 1.0))}   # the store's step, whatever made it
    values["patches"] = {VIDEOS: fs.has_patches}                 # patch tokens where the store has them
    if values["random_weights"]:
        return ExtractConfig(**values)
    encoders = features["encoders"]
    for what, key, setting, override in (("CLIP", "clip", "clip_weights", clip_weights),
                                         ("VGGish", "vggish", "vggish_weights", vggish_weights)):
        made = encoders.get(key, {})
        if str(made.get("weights", "")).startswith("open_clip:"):   # fetched by tag: open_clip's cache
            values.update(download=True, clip_pretrained_tag=made["weights"].split(":", 1)[1],
                          clip_weights=str(Path(override or "/nonexistent/by-tag")))
            continue
        expected = made.get("sha256")
        path = resolve_path(override or values.get(setting, ""))
        flag = f"--{setting.replace('_', '-')}"
        if not path.is_file():
            raise WeightsError(f"{what} weights not found: {path} (setting {setting}; pass {flag} PATH). The run's "
                               f"store {fs.path} was made with {made.get('weights')}, SHA-256 {expected}.")
        got = file_sha256(path)
        if expected and got != expected:
            raise WeightsError(f"{what} weights {path} have SHA-256 {got}, but the run's store {fs.path} was made "
                               f"with {made.get('weights')} of SHA-256 {expected} (setting {setting}; pass {flag} "
                               f"PATH to that file). Other weights would give other features than the model "
                               f"was trained on.")
        values[setting] = str(path)
    return ExtractConfig(**values)


def check_same_features(stores: dict[str, FeatureStore]) -> dict:
    """All the run's stores were made with one set of encoders and settings; returns them."""
    found = {t: {k: store_features(fs).get(k) for k in SAME_FEATURES} for t, fs in stores.items()}
    first = next(iter(found.values()))
    for task, f in found.items():
        diff = [k for k in SAME_FEATURES if f[k] != first[k]]
        if diff:
            raise PredictError(f"the run's stores differ in {', '.join(diff)} ({next(iter(found))} vs {task}): "
                               f"one video cannot be extracted as both")
    return first


def features_name(hop: float) -> str:
    """The video's store for features of one step: features.zarr at 1 s, features-<hop>s.zarr else."""
    return "features.zarr" if hop == 1.0 else f"features-{hop:g}s.zarr"


def extract_video(video: Path, folder: Path, cfg: ExtractConfig) -> FeatureStore:
    """The video's features in folder/features_name(hop) (stage one, T = 0); reused when it holds
    this very file (size and time), made with these settings."""
    from pipeline.extract import feature_hop, run_extract
    from pipeline.store import StoreError

    out = folder / features_name(feature_hop(cfg))
    stat = video.stat()
    source = {"path": str(video.resolve()), "bytes": stat.st_size, "mtime": stat.st_mtime}
    if out.exists():
        try:
            same = FeatureStore(out).attrs.get("predict_source") == source
        except StoreError:
            same = False
        if not same:
            shutil.rmtree(out)
    try:
        summary = run_extract([video], [video.stem], out, cfg, extra_attrs={"predict_source": source})
    except StoreError:                  # made with other settings: extract again
        shutil.rmtree(out)
        summary = run_extract([video], [video.stem], out, cfg, extra_attrs={"predict_source": source})
    failed = {**summary.failed, **summary.failed_before}
    if failed:
        shutil.rmtree(out, ignore_errors=True)
        raise PredictError(f"{video}: could not be extracted: {next(iter(failed.values()))}")
    return FeatureStore(out)


# ----------------------------------------------------------------------------- windows
def windows(n: int, T: int) -> list[tuple[int, int, int]]:
    """(start, stop, first owned step) of the windows covering steps 0..n-1 (module docstring);
    T = 0: one window, the whole video (a head trained on clips of any length)."""
    if T <= 0 or n <= T:
        return [(0, n, 0)]
    out = [(s, s + T, s) for s in range(0, n - T + 1, T)]
    if out[-1][1] < n:
        out.append((n - T, n, out[-1][1]))
    return out


def owner(plan: list[tuple[int, int, int]], n: int) -> np.ndarray:
    """(n,) the window each step's outputs come from."""
    who = np.zeros(n, np.int64)
    for w, (_, stop, first) in enumerate(plan):
        who[first:stop] = w
    return who


# ----------------------------------------------------------------------------- the heads
@dataclass
class TaskInputs:
    """What one benchmark's head needs beside the video's features."""
    task: str
    ts: TaskStore
    prompt: np.ndarray                       # (D,) the task prompt's CLIP embedding
    window: int                              # T: steps per window (0: the whole video, dense heads)
    mask_size: int = 224
    questions: list[str] = field(default_factory=list)
    question_emb: np.ndarray | None = None   # (Q, D)
    hop: float = 1.0                         # seconds per step of its store (its features' step)


def task_inputs(task: str, ts: TaskStore, fs: FeatureStore) -> TaskInputs:
    masks = fs.group["masks"].shape[-1] if "masks" in fs.arrays else 224
    window = 0 if kind_of(ts.spec) == "dense" else ts.T      # dense heads are memory-linear in length
    return TaskInputs(task, ts, fs.shared("task_emb")[prompt_row(fs, task)].astype(np.float32), window, int(masks),
                      hop=float(fs.attrs.get("hop", 1.0)))


def ssl_heatmaps(head, audio_in: torch.Tensor, patches_visual: torch.Tensor) -> torch.Tensor:
    """VGG-SS heatmaps of every step: (B, T, D), (B, T, M, D) -> (B, T, g, g). The head's own
    computation (trainer/tasks/vggss.py), at each step instead of the middle one only."""
    B, T, M, _ = patches_visual.shape
    audio = F.normalize(head.audio(audio_in).float(), dim=-1)
    patch = F.normalize(head.patch(patches_visual).float(), dim=-1)
    return torch.einsum("btd,btmd->btm", audio, patch).view(B, T, head.grid, head.grid)


def _forward(model, inputs: TaskInputs, feats: dict[str, np.ndarray], plan, device, norm, prompt=None):
    """The head's outputs for every window, batched: yields (window indices, outputs)."""
    ts, spec = inputs.ts, inputs.ts.spec
    vocab = torch.as_tensor(ts.vocab_emb, device=device)
    valid = None if ts.valid_ids is None else torch.as_tensor(ts.valid_ids, device=device)
    names = ("audio", "visual") + (("patches",) if model.heads[spec.head].uses_patches else ())
    for k in range(0, len(plan), BATCH_WINDOWS):
        part = plan[k:k + BATCH_WINDOWS]
        batch = {n: torch.from_numpy(np.stack([feats[n][a:b] for a, b, _ in part])) for n in names}
        batch["length"] = torch.tensor([b - a for a, b, _ in part])
        batch["hop"] = torch.full((len(part),), inputs.hop)
        batch["task"] = inputs.task
        p = inputs.prompt if prompt is None else prompt
        batch["prompt"] = torch.from_numpy(np.repeat(p[None].astype(np.float16), len(part), 0))
        batch = to_device(batch, device, norm)
        if prompt is not None and norm is not None and "question" in norm:   # as to_device does for questions
            batch["prompt"] = (batch["prompt"] - norm["question"]["mean"].to(device)) / norm["question"]["std"].to(device)
        with autocast(device, "auto"):
            out = model(batch, spec.head, vocab, valid, **spec.head_options)
        yield list(range(k, k + len(part))), out


@torch.no_grad()
def collect(model, inputs: TaskInputs, feats: dict[str, np.ndarray], n: int, device, norm,
            on_window: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """The task's outputs stitched per step over the video (leading axis n), plus per-window
    arrays (leading axis = windows) where the head has them. Keys by benchmark (DESCRIBE)."""
    plan = windows(n, inputs.window)
    who = owner(plan, n)
    task, parts, windowed = inputs.task, {}, {}
    kind = kind_of(inputs.ts.spec)
    if kind == "qa":
        return _answers(model, inputs, feats, plan, device, norm, on_window)
    for idx, out in _forward(model, inputs, feats, plan, device, norm):
        if kind == "segments":
            got = {"probs": out["class_logits"].float().softmax(-1)}
        elif kind == "parsing":
            got = {"prob_a": out["frame_prob"][:, :, 0].float(), "prob_v": out["frame_prob"][:, :, 1].float(),
                   "video_prob": out["global_prob"].float()}
        elif kind == "ssl":
            got = {"heatmap": ssl_heatmaps(model.heads[inputs.ts.head], out["audio_in"], out["patches_visual"])}
        elif kind == "mask":
            got = {"mask_logits": out["mask_logits"][:, :, 0].float()}          # (B, W, 4g, 4g)
        elif kind == "semantic":
            got = {"mask_classes": avs_head.decode(out, inputs.mask_size)["mask_classes"].to(torch.uint8)}
        elif kind == "dense":      # per window: its top detections, in seconds from the window's start
            lengths = torch.tensor([b - a for a, b, _ in plan[idx[0]:idx[-1] + 1]])
            dets = inputs.ts.spec.predict(out, {"length": lengths, "hop": torch.full((len(idx),), inputs.hop)})
            for key, x in dets.items():
                windowed.setdefault(key, []).extend(x.cpu().numpy())
            got = {}
        else:
            raise PredictError(f"{task}: predict has no decoder for this benchmark's head ({inputs.ts.head})")
        for key, x in got.items():
            parts.setdefault(key, []).extend(x.cpu().numpy())
        if on_window:
            on_window(len(idx))
    result = {"window_bounds": np.array([(a, b) for a, b, _ in plan], np.int64), "owner": who}
    result |= {key: np.stack(per_window) for key, per_window in windowed.items()}
    for key, per_window in parts.items():
        if key == "video_prob":
            result[key] = np.stack(per_window)
            continue
        result[key] = np.stack([per_window[who[s]][s - plan[who[s]][0]] for s in range(n)])
    return result


def _answers(model, inputs: TaskInputs, feats, plan, device, norm, on_window) -> dict[str, np.ndarray]:
    """MUSIC-AVQA: (Q, windows, K) answer probabilities and (Q, K) their step-weighted mean."""
    per_q = []
    for q in range(len(inputs.questions)):
        probs = []
        for idx, out in _forward(model, inputs, feats, plan, device, norm, prompt=inputs.question_emb[q]):
            probs.extend(out["class_logits"].float().softmax(-1).cpu().numpy())
        per_q.append(np.stack(probs))
        if on_window:
            on_window(len(plan))
    steps = np.array([b - a for a, b, _ in plan], np.float64)
    prob = np.stack(per_q) if per_q else np.zeros((0, len(plan), len(inputs.ts.classes)))
    mean = (prob * steps[None, :, None]).sum(1) / steps.sum() if len(prob) else np.zeros((0, prob.shape[-1]))
    return {"window_bounds": np.array([(a, b) for a, b, _ in plan], np.int64), "window_probs": prob, "probs": mean}


# ----------------------------------------------------------------------------- as seconds and events
def _top(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": classes[i], "score": round(float(probs[i]), 4)} for i in order]


def runs(on: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the maximal runs of True in a 1-d bool array."""
    edges = np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _event(task: str, label: str, modality: str, a: int, b: int, score: float, hop: float) -> dict:
    return {"task": task, "label": label, "modality": modality, "start": round(a * hop, 3),
            "end": round(b * hop, 3), "score": round(float(score), 4)}


def _steps(n: int, hop: float) -> list[dict]:
    return [{"start": round(k * hop, 3), "end": round((k + 1) * hop, 3)} for k in range(n)]


def describe_segments(task: str, a: dict, classes: list[str], hop: float) -> dict:
    """AVE: a class per step, background last; events are runs of one event class."""
    probs = a["probs"]                                     # (n, 29), background last
    label = probs.argmax(-1)
    rows = [{**row, "label": classes[label[k]], "score": round(float(probs[k, label[k]]), 4),
             "top": _top(probs[k], classes, 3)} for k, row in enumerate(_steps(len(probs), hop))]
    bg = len(classes) - 1
    events = [_event(task, classes[c], "audio-visual", s, e, probs[s:e, c].mean(), hop)
              for c in range(bg) for s, e in runs(label == c)]
    return {"seconds": rows, "events": sorted(events, key=lambda e: (e["start"], e["label"]))}


def describe_parsing(task: str, a: dict, classes: list[str], hop: float) -> dict:
    """HAN's rule per window (a step is on when its own and its window's probability are >= 0.5);
    audio-visual = on in both."""
    video = a["video_prob"][a["owner"]]                   # (n, C): the owning window's
    pa, pv = llp_predict(video, a["prob_a"][None], a["prob_v"][None])
    pa, pv = pa[0], pv[0]                                 # (C, n)
    tracks = {"audio": (pa, a["prob_a"].T), "visual": (pv, a["prob_v"].T),
              "audio-visual": (pa & pv, np.minimum(a["prob_a"], a["prob_v"]).T)}
    rows = _steps(len(video), hop)
    for k, row in enumerate(rows):
        for name, (on, p) in tracks.items():
            row[name] = [{"label": classes[c], "score": round(float(p[c, k]), 4)} for c in np.flatnonzero(on[:, k])]
    events = [_event(task, classes[c], name, s, e, p[c, s:e].mean(), hop)
              for name, (on, p) in tracks.items() for c in range(len(classes)) for s, e in runs(on[c])]
    bounds = a["window_bounds"]
    wins = [{"start": round(s * hop, 3), "end": round(e * hop, 3),
             "video_labels": [{"label": classes[c], "score": round(float(a["video_prob"][w, c]), 4)}
                              for c in np.flatnonzero(a["video_prob"][w] >= 0.5)]} for w, (s, e) in enumerate(bounds)]
    return {"seconds": rows, "events": sorted(events, key=lambda e: (e["start"], e["modality"], e["label"])),
            "windows": wins}


def describe_ssl(task: str, a: dict, classes: list[str], hop: float) -> dict:
    heat = a["heatmap"]                                   # (n, g, g) cosine similarities
    g = heat.shape[-1]
    rows = []
    for k, row in enumerate(_steps(len(heat), hop)):
        y, x = np.unravel_index(int(heat[k].argmax()), (g, g))
        rows.append({**row, "peak": [round((x + 0.5) / g, 4), round((y + 0.5) / g, 4)],
                     "max": round(float(heat[k].max()), 4),
                     "heatmap": np.round(heat[k], 4).tolist()})
    return {"seconds": rows, "events": [], "grid": int(g)}


def binary_masks(a: dict, size: int) -> np.ndarray:
    """(n, size, size) sounding-pixel probabilities, upsampled as the head's decode does."""
    logits = torch.from_numpy(a["mask_logits"])[None]     # (1, n, h, w)
    return torch.sigmoid(avs_head.upsample_logits(logits.numpy(), size)[0]).numpy()


def describe_mask(task: str, a: dict, classes: list[str], hop: float) -> dict:
    prob = binary_masks(a, 64)
    on = prob > 0.5
    rows = [{**row, "area": round(float(on[k].mean()), 4),
             "score": round(float(prob[k][on[k]].mean()) if on[k].any() else 0.0, 4)}
            for k, row in enumerate(_steps(len(prob), hop))]
    return {"seconds": rows, "events": []}


def describe_semantic(task: str, a: dict, classes: list[str], hop: float) -> dict:
    masks = a["mask_classes"]                            # (n, S, S) class indices, 0 = background
    rows = []
    for k, row in enumerate(_steps(len(masks), hop)):
        counts = np.bincount(masks[k].ravel(), minlength=len(classes))
        objects = [{"label": classes[c] if c < len(classes) else str(c), "area": round(float(counts[c] / masks[k].size), 4)}
                   for c in np.flatnonzero(counts) if c != 0]
        rows.append({**row, "objects": sorted(objects, key=lambda o: -o["area"])})
    area = np.stack([np.bincount(m.ravel(), minlength=len(classes))[:len(classes)] for m in masks]) / masks[0].size
    events = [_event(task, classes[c], "visual", s, e, area[s:e, c].mean(), hop)   # on >= MIN_AREA of the frame
              for c in range(1, len(classes)) for s, e in runs(area[:, c] >= MIN_AREA)]
    return {"seconds": rows, "events": sorted(events, key=lambda e: (e["start"], e["label"]))}


def describe_dense(task: str, a: dict, classes: list[str], hop: float, modality: str) -> dict:
    """Dense localisation: every window's detections (Soft-NMS, top 100, seconds), offset to the
    video's axis; `events` are those scoring at least DENSE_EVENT_SCORE, `detections` all of them."""
    dets = []
    for w, (start, _) in enumerate(a["window_bounds"]):
        for (s, e), score, label in zip(a["det_segment"][w], a["det_score"][w], a["det_label"][w]):
            if label >= 0:
                dets.append({"task": task, "label": classes[int(label)], "modality": modality,
                             "start": round(float(s) + start * hop, 3), "end": round(float(e) + start * hop, 3),
                             "score": round(float(score), 4)})
    dets.sort(key=lambda d: -d["score"])
    events = sorted((d for d in dets if d["score"] >= DENSE_EVENT_SCORE), key=lambda e: (e["start"], e["label"]))
    return {"seconds": [], "events": events, "detections": dets}


def describe_qa(task: str, a: dict, classes: list[str], hop: float, questions: list[str]) -> dict:
    bounds = a["window_bounds"]
    qa = []
    for q, text in enumerate(questions):
        top = _top(a["probs"][q], classes, 3)
        qa.append({"question": text, "answer": top[0]["label"], "top": top,
                   "windows": [{"start": round(s * hop, 3), "end": round(e * hop, 3),
                                "top": _top(a["window_probs"][q, w], classes, 3)} for w, (s, e) in enumerate(bounds)]})
    return {"seconds": [], "events": [], "questions": qa}


# what a head's outputs are, by head module (AVS: by its mode); a benchmark is predicted by its head's kind
HEAD_KINDS = {ave_head: "segments", llp_head: "parsing", vggss_head: "ssl", avqa_head: "qa", dense_head: "dense"}
AVS_KINDS = {"binary": "mask", "classes": "semantic"}
DESCRIBE: dict[str, Callable] = {"segments": describe_segments, "parsing": describe_parsing, "ssl": describe_ssl,
                                 "mask": describe_mask, "semantic": describe_semantic}
MODALITY = {"segments": "audio-visual", "parsing": "audio / visual / audio-visual", "ssl": "visual (sound source)",
            "mask": "visual (sounding objects)", "semantic": "visual (sounding objects by class)",
            "qa": "audio-visual (question answering)", "dense": "dense events"}


def kind_of(spec) -> str | None:
    """The kind of a benchmark's outputs (HEAD_KINDS), None where predict has no reader for its head."""
    module = HEADS.get(spec.head)
    if module is avs_head:
        return AVS_KINDS.get(spec.head_options.get("mode", "binary"))
    return HEAD_KINDS.get(module)


# ----------------------------------------------------------------------------- the driver
@dataclass
class Prepared:
    """A run made ready to predict: its tasks' inputs, models and the extraction settings."""
    run: object
    tasks: dict[str, TaskInputs]
    models: dict[str, tuple]                  # task -> (model, checkpoint state, checkpoint path)
    cfg: ExtractConfig                        # the first task's extraction settings (its step: hop)
    features: dict
    hop: float
    stores: dict[str, str]
    device: torch.device
    warnings: list[str] = field(default_factory=list)
    cfgs: dict[float, ExtractConfig] = field(default_factory=dict)   # step -> settings: one extraction each


def prepare(run_dir: Path, tasks: list[str] | None = None, checkpoint: str = "best", asks: list[str] = (),
            clip_weights: str | None = None, vggish_weights: str | None = None, device: str = "auto") -> Prepared:
    """Open the run and its stores, check the weights, load the checkpoints, embed the questions."""
    run = load_run(run_dir)
    wanted = list(run.tasks) if not tasks else tasks
    unknown = [t for t in wanted if t not in run.tasks]
    if unknown:
        raise PredictError(f"{run_dir}: the run did not train {', '.join(unknown)}; it trained {', '.join(run.tasks)}")
    warnings = []
    for t in [t for t in wanted if kind_of(BENCHMARKS[t]) is None]:
        wanted.remove(t)
        warnings.append(f"{t}: predict has no reader for its head ({BENCHMARKS[t].head}); left out")
    qa = [t for t in wanted if kind_of(BENCHMARKS[t]) == "qa"]
    if qa and not asks:
        wanted = [t for t in wanted if t not in qa]
        warnings.append(f"{', '.join(qa)}: no --ask question, so no answer (none is invented)")
    if asks and not qa:
        trained = [t for t in run.tasks if kind_of(BENCHMARKS[t]) == "qa"]
        raise PredictError(f"--ask needs a question-answering head (MUSIC-AVQA); the run's tasks: "
                           f"{', '.join(run.tasks)}" + (f" (--tasks left {', '.join(trained)} out)" if trained else ""))
    if not wanted:
        raise PredictError("nothing to predict: " + "; ".join(warnings))
    paths, stores = {}, {}
    for t in wanted:
        p = run.store_path(t)
        if p is None:
            raise PredictError(f"{run_dir}: store of {t} not found ({run.stores.get(t, 'none in run.json')}): "
                               f"predict reads its vocabulary, prompts and extraction settings")
        paths[t], stores[t] = p, FeatureStore(p)
    features = check_same_features(stores)
    first = next(iter(stores.values()))
    cfgs = {}                                 # one extraction per step (dense stores: 0.25 s; others 1 s),
    for fs in stores.values():                # with patches where a store of that step has them
        hop = float(fs.attrs.get("hop", 1.0))
        if hop not in cfgs or (fs.has_patches and not cfgs[hop].patches[VIDEOS]):
            cfgs[hop] = encoder_config(fs, clip_weights, vggish_weights, device)
    cfg = cfgs[float(first.attrs.get("hop", 1.0))]
    dev = resolve_device(device)
    inputs = {t: task_inputs(t, open_task(t, paths[t]), stores[t]) for t in wanted}
    if asks:
        from pipeline.extract import load_encoders, resolve_weights

        clip = load_encoders(resolve_weights(cfg, cfg.device)[0])[0]
        emb = clip.encode_text(list(asks)).float().cpu().numpy()
        for t in qa:
            inputs[t].questions, inputs[t].question_emb = list(asks), emb
    models, loaded = {}, {}
    for t in wanted:
        ck = pick_checkpoint(Path(run_dir), checkpoint, t)
        if ck not in loaded:
            if not ck.is_file():
                raise PredictError(f"{ck}: no such checkpoint")
            loaded[ck] = load_model(ck, dev)
        models[t] = (*loaded[ck], ck)
    return Prepared(run, inputs, models, cfg, features, float(first.attrs.get("hop", 1.0)),
                    {t: str(p) for t, p in paths.items()}, dev, warnings, cfgs)


def video_features(fs: FeatureStore) -> tuple[dict[str, np.ndarray], dict]:
    length = int(fs.read("length", 0))
    feats = {n: np.asarray(fs.read(n, 0))[:length] for n in ("audio", "visual", "patches") if n in fs.feature_arrays}
    info = {"steps": length}
    for name in ("audio_length", "visual_length"):
        if name in fs.arrays:
            info[name] = int(fs.read(name, 0))
    return feats, info


def predict_video(prep: Prepared, video: Path, out: Path, progress: Callable[[str, int, int], None] | None = None
                  ) -> dict:
    """Extract, run every head, write predictions.json, the overlay PNGs and index.html into
    out/; returns the predictions document."""
    from trainer.page import write_overlays, write_page

    tick = progress or (lambda what, done, total: None)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfgs = prep.cfgs or {prep.hop: prep.cfg}
    tick("extract", 0, len(cfgs))
    by_hop, made_by = {}, {}
    for hop, cfg in cfgs.items():
        made_by[hop] = extract_video(video, out, cfg)
        made = {k: store_features(made_by[hop]).get(k) for k in SAME_FEATURES}
        if made != {k: prep.features.get(k) for k in SAME_FEATURES}:      # the guarantee, checked on the result
            raise PredictError(f"{video}: its features were made with other settings than the run's stores")
        by_hop[hop] = video_features(made_by[hop])
        tick("extract", len(by_hop), len(cfgs))
    fs = made_by[prep.hop]
    feats, info = by_hop[prep.hop]
    n = info["steps"]
    t_extract = time.perf_counter() - t0
    total = sum(len(windows(by_hop[ti.hop][1]["steps"], ti.window)) * max(1, len(ti.questions))
                for ti in prep.tasks.values())
    done = [0]

    def advance(k: int) -> None:
        done[0] += k
        tick("heads", done[0], total)

    tasks, arrays = {}, {}
    for t, ti in prep.tasks.items():
        model, state, ck = prep.models[t]
        t_feats, t_info = by_hop[ti.hop]
        a = collect(model, ti, t_feats, t_info["steps"], prep.device, state.get("feature_norm"), advance)
        arrays[t] = a
        kind = kind_of(ti.ts.spec)
        if kind == "qa":
            body = describe_qa(t, a, ti.ts.classes, ti.hop, ti.questions)
        elif kind == "dense":
            body = describe_dense(t, a, ti.ts.classes, ti.hop, ti.ts.spec.modality or "audio-visual")
        else:
            body = DESCRIBE[kind](t, a, ti.ts.classes, ti.hop)
        tasks[t] = {"benchmark": t, "head": ti.ts.head, "kind": kind,
                    "modality": ti.ts.spec.modality or MODALITY[kind], "hop": ti.hop, "steps": t_info["steps"],
                    "window_steps": int(ti.window or a["window_bounds"][0][1] - a["window_bounds"][0][0]),
                    "windows": [{"start": round(s * ti.hop, 3), "end": round(e * ti.hop, 3)}
                                for s, e in a["window_bounds"]],
                    "checkpoint": str(ck), "classes": list(ti.ts.classes), **body}
    t_heads = time.perf_counter() - t0 - t_extract
    random = bool(prep.features.get("random_weights")) or prep.run.random_weights
    doc = {
        "schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "random_weights": random,
        "notice": RANDOM_MARK + ": the encoders have random weights; nothing here says anything about "
                  "pretrained models" if random else "",
        "video": {"path": str(video.resolve()), "name": video.name, "stem": video.stem,
                  "duration": round(n * prep.hop, 3), "steps": n, "hop": prep.hop,
                  "audio_seconds": round(info.get("audio_length", n) * prep.hop, 3),
                  "visual_seconds": round(info.get("visual_length", n) * prep.hop, 3)},
        "run": {"path": str(Path(prep.run.path).resolve()), "name": prep.run.name, "tasks": list(prep.run.tasks),
                "random_weights": prep.run.random_weights},
        "provenance": {"features": _jsonable(prep.features), "stores": prep.stores,
                       "extract": {k: _jsonable(v) for k, v in dataclasses.asdict(prep.cfg).items()
                                   if k in ("clip_model", "clip_weights", "vggish_weights", "patch_grid",
                                            "precision", "sample_rate", "decoder", "random_weights")},
                       "avu_version": fs.attrs.get("avu_version"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "warnings": list(prep.warnings),
        "timing": {"extract_seconds": round(t_extract, 3), "heads_seconds": round(t_heads, 3)},
        "tasks": tasks,
        "files": {},
    }
    tick("pages", 0, 1)
    frames = decode_frames(video, n, prep.cfg)
    doc["files"]["overlays"] = write_overlays(out, doc, arrays, frames)
    doc["files"]["json"] = "predictions.json"
    doc["files"]["page"] = "index.html"
    doc["timing"]["total_seconds"] = round(time.perf_counter() - t0, 3)
    (out / "predictions.json").write_text(json.dumps(doc, indent=1))
    write_page(out, doc, frames, arrays)
    tick("pages", 1, 1)
    return doc


def decode_frames(video: Path, n: int, cfg: ExtractConfig) -> np.ndarray:
    """The frame of every step, as stage one decoded it (for the overlays)."""
    from pipeline.decode import decode_source

    return decode_source(video, n, cfg.sample_rate, cfg.decoder, pad=True).frames[:n]


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return x


def list_inputs(paths: list[Path]) -> list[Path]:
    """Video files: the files given, and the videos in the folders given (recursively)."""
    from pipeline.extract import list_videos

    found = []
    for p in paths:
        if p.is_dir():
            found += list_videos(p)
        elif p.is_file():
            found.append(p)
        else:
            raise PredictError(f"{p}: no such video file or folder")
    if not found:
        raise PredictError(f"no video files in {', '.join(map(str, paths))} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    return found


def output_folders(videos: list[Path], out: Path) -> list[Path]:
    """DIR/<stem>/ for each video; stems that repeat get their parent folder's name too."""
    stems = [v.stem for v in videos]
    return [out / (f"{v.parent.name}-{v.stem}" if stems.count(v.stem) > 1 else v.stem) for v in videos]
