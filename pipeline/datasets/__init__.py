"""The ten benchmarks of stage one: one adapter module per benchmark behind one interface.

    ds = load_dataset("llp", root, DatasetsConfig())        # parse the real annotation files
    extract_dataset(ds, out, extract_cfg)                   # features + targets -> one store

Each module `<benchmark>.py` is the one place for that benchmark: its files and splits, its
classes, its task prompt, its T and its synthetic copy (`avu synth`), gathered in one
`Adapter` (common.py); ADAPTERS below lists them, and the vocabulary (pipeline/vocab.py), the
synthetic data (pipeline/synth.py) and the prompts are read from it. An adapter's
`load(root, cfg) -> Dataset` reads the benchmark's own files in its official layout, handles
and counts every quirk (`Dataset.quirks`), and gives one `Clip` per sample with its source (a
video, or AVSBench frames + wav), its split and its target arrays. Its T overrides the
extract setting.

The store (`extract_dataset`) holds only the clips whose media are present; the others are
counted (attrs["missing"]) and listed, clip id and expected file, in `<store>.missing.txt`.
Besides the features it holds everything stage two reads, written by the driver after the
features (an interrupted run writes them on resume; a fingerprint of the targets makes a rerun
skip them when nothing changed):
    attrs     dataset, task, T, splits {split: [clip indices]}, classes (the task's class
              names, in index order), quirks, missing, vocab (version, sha, tokens, phrases),
              task_prompts {task: prompt}, prompt_names (the tasks in task_emb's row order),
              and what the adapter adds (MUSIC-AVQA: answers, question_types,
              question_splits, question_text)
    per clip  the adapter's targets, named as in its docstring
    shared/   vocab_emb (V, D) float32: CLIP text embedding of every vocabulary phrase;
              task_emb (10, D) float32: of every task's prompt, one batch, rows in prompt_names
              order (ADAPTERS order);
              valid_ids (K,) int32: the task's class tokens in class order (none for MS3);
              class_emb (K, D) float32 (dense tasks, whose adapter has a class_template): of
              every class's prompt, in class order; attrs["class_prompts"] holds the texts;
              MUSIC-AVQA's question table question_* (one row per question, see music_avqa.py)
              and question_emb (Q, D) float16
Stores written before vocabulary version 2 also hold per-clip `tokens` (and LLP `eval_tokens`,
MUSIC-AVQA `shared/question_tokens`) and 73 more vocabulary rows; stage two reads none of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import DatasetsConfig, ExtractConfig
from . import activitynet, ave, avs_ms3, avs_s4, avss, desed, llp, music_avqa, unav100, vggss
from .common import Adapter, Clip, Dataset, DatasetError

ADAPTERS: dict[str, Adapter] = {
    "ave": ave.ADAPTER,
    "llp": llp.ADAPTER,
    "vggss": vggss.ADAPTER,
    "avs-s4": avs_s4.ADAPTER,
    "avs-ms3": avs_ms3.ADAPTER,
    "avss": avss.ADAPTER,
    "music-avqa": music_avqa.ADAPTER,
    "unav100": unav100.ADAPTER,
    "activitynet": activitynet.ADAPTER,
    "desed": desed.ADAPTER,
}


def prompts() -> dict[str, str]:
    """Every benchmark's task instruction (embedded into each store's shared/task_emb), by name."""
    return {name: a.prompt for name, a in ADAPTERS.items()}


def class_prompts(name: str, classes: list[str]) -> list[str]:
    """The benchmark's class prompt of every class, in class order (UniAV's templates, names with
    underscores shown with spaces); [] for a benchmark without a template."""
    adapter = ADAPTERS.get(name)
    if adapter is None or not adapter.class_template:
        return []
    return [adapter.class_template.format(" ".join(c.replace("_", " ").split())) for c in classes]


__all__ = ["ADAPTERS", "prompts", "class_prompts", "Adapter", "Clip", "Dataset", "DatasetError", "load_dataset",
           "extract_dataset", "present", "missing_list"]


def load_dataset(name: str, root: Path, cfg: DatasetsConfig | None = None) -> Dataset:
    if name not in ADAPTERS:
        raise DatasetError(f"unknown dataset {name!r}; datasets: {', '.join(ADAPTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (--root is the dataset's folder)")
    return ADAPTERS[name].load(root, cfg or DatasetsConfig())


def source_exists(source) -> bool:
    """A video file, or an image-sequence clip whose audio and first frame exist."""
    if isinstance(source, dict):
        return bool(source["frames"]) and Path(source["frames"][0]).is_file() and Path(source["audio"]).is_file()
    return Path(source).is_file()


def present(ds: Dataset) -> tuple[list[Clip], list[Clip]]:
    """(clips whose media are there, clips whose media are missing)."""
    have = [source_exists(c.source) for c in ds.clips]
    return [c for c, h in zip(ds.clips, have) if h], [c for c, h in zip(ds.clips, have) if not h]


def extract_dataset(ds: Dataset, out: Path, cfg: ExtractConfig, on_results=None) -> tuple[object, list[Clip]]:
    """Extract the present clips of `ds` into the store `out`, then write its targets, ground
    truth and text embeddings. Returns (extract Summary, missing clips)."""
    from ..extract import run_extract
    from ..store import FeatureStore

    out = Path(out)
    clips, missing = present(ds)
    if not clips:
        example = ds.clips[0].source if ds.clips else "?"
        raise DatasetError(f"{ds.name}: none of the {len(ds.clips)} clips' media found (e.g. {example}); "
                           f"check --root and the datasets section of stages.yaml")
    cfg = dataclasses.replace(cfg, T=ds.T)
    splits = {s: [i for i, c in enumerate(clips) if s in c.splits] for s in ds.split_names()}
    attrs = {"dataset": ds.name, "task": ds.name, "splits": splits, "vocab": ds.vocab.as_attrs(),
             "quirks": dict(ds.quirks), "missing": len(missing)}
    summary = run_extract([c.source for c in clips], [c.clip_id for c in clips], out, cfg, on_results, attrs,
                          task=ds.name)
    store = FeatureStore(out, mode="r+")
    write_targets(store, ds, clips, cfg)
    listing = missing_list(out)
    if missing:
        listing.write_text("".join(f"{c.clip_id}\t{_describe(c.source)}\n" for c in missing))
    elif listing.exists():
        listing.unlink()
    store.set_attrs(**{k: v for k, v in attrs.items() if k != "quirks"})   # write_targets wrote them all
    return summary, missing


def missing_list(out: Path) -> Path:
    """Where the clips without media are listed: beside the store (zarr warns about files inside)."""
    return Path(out).with_name(Path(out).name + ".missing.txt")


def _describe(source) -> str:
    return source["audio"] if isinstance(source, dict) else str(source)


def _stack(clips: list[Clip], name: str) -> np.ndarray:
    return np.stack([np.asarray(c.targets[name]) for c in clips])


def fingerprint(ds: Dataset, clips: list[Clip], cfg: ExtractConfig) -> str:
    h = hashlib.sha256(f"{ds.vocab.sha} {cfg.clip_model} {cfg.random_weights} {ds.dense_key}".encode())
    h.update(repr(prompts()).encode())                   # task_emb
    h.update(repr(class_prompts(ds.name, ds.classes)).encode())   # class_emb
    for name in sorted(clips[0].targets):
        h.update(name.encode() + _stack(clips, name).tobytes())
    for name, values in sorted((ds.questions or {}).items()):
        h.update(name.encode() + repr(list(values)).encode())
    h.update(repr([c.clip_id for c in clips]).encode())
    return h.hexdigest()[:20]


def write_targets(store, ds: Dataset, clips: list[Clip], cfg: ExtractConfig) -> None:
    """Per-clip targets, dense ground truth, the question table and text embeddings; skipped
    when the store already holds exactly these (same fingerprint)."""
    fp = fingerprint(ds, clips, cfg)
    if store.attrs.get("targets_fingerprint") == fp:
        return
    store.set_attrs(targets_fingerprint=None)            # a half-written rewrite is never trusted
    for name in clips[0].targets:
        store.put(name, _stack(clips, name))
    _write_dense(store, ds, clips)
    encode = _text_encoder(cfg)
    store.put("vocab_emb", encode(list(ds.vocab.phrases)).astype(np.float32), per_clip=False)
    task_prompts = prompts()
    store.put("task_emb", encode(list(task_prompts.values())).astype(np.float32), per_clip=False)
    if ds.classes:
        store.put("valid_ids", ds.vocab.class_ids(ds.classes), per_clip=False)
    texts = class_prompts(ds.name, ds.classes)
    if texts:
        store.put("class_emb", encode(texts).astype(np.float32), per_clip=False)
        extra_attrs = {"class_prompts": texts}
    else:
        extra_attrs = {}
    extra = _write_questions(store, ds, clips, encode) if ds.questions else {}
    store.set_attrs(classes=list(ds.classes), task_prompts=task_prompts, prompt_names=list(task_prompts),
                    quirks=dict(ds.quirks), **ds.attrs, **extra, **extra_attrs)
    store.set_attrs(targets_fingerprint=fp)


def _write_dense(store, ds: Dataset, clips: list[Clip]) -> None:
    """Big per-clip arrays (AVSBench masks) are made one clip at a time, never all at once."""
    if not ds.dense_shapes:
        return
    for name, (tail, dtype) in ds.dense_shapes.items():   # all-zero chunks are not stored
        store.put(name, np.broadcast_to(np.zeros((), dtype), (len(clips), *tail)))
    quirks = Counter()
    for i, clip in enumerate(clips):
        store.write_clip(i, clip.dense(quirks))
    for k, v in quirks.items():                           # keys only the dense pass counts
        ds.quirks[k] = v


def _text_encoder(cfg: ExtractConfig) -> Callable[[list[str]], np.ndarray]:
    from ..extract import load_encoders, resolve_weights

    clip = load_encoders(resolve_weights(cfg, cfg.device)[0])[0]

    def encode(texts: list[str]) -> np.ndarray:
        unique = list(dict.fromkeys(texts))                # questions repeat: embed each text once
        emb = clip.encode_text(unique).float().cpu().numpy()
        where = {t: k for k, t in enumerate(unique)}
        return emb[[where[t] for t in texts]] if texts else emb
    return encode


def _write_questions(store, ds: Dataset, clips: list[Clip], encode) -> dict:
    """MUSIC-AVQA: one row per question whose video is in the store; `question_clip` indexes clips."""
    q = ds.questions
    index = {c.clip_id: i for i, c in enumerate(clips)}
    keep = np.array([cid in index for cid in q["clip_id"]], bool)
    ds.quirks["questions_of_missing_videos"] = int((~keep).sum())
    store.put("question_clip", np.array([index[c] for c in np.asarray(q["clip_id"])[keep]], np.int32), per_clip=False)
    for name, values in q.items():
        if name not in ("clip_id", "text"):
            store.put(f"question_{name}", np.asarray(values)[keep], per_clip=False)
    texts = [t for t, k in zip(q["text"], keep) if k]
    store.put("question_emb", encode(texts).astype(np.float16), per_clip=False)
    return {"question_text": texts}
