"""Feature stores in the layout of pipeline/datasets (targets, shared/ arrays, question table),
written directly with random features: trainer tests in milliseconds, no video, no encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.store import create
from pipeline.vocab import AVQA_TYPES, CLASSES, TASKS, VOCAB

D, G, S = 16, 2, 16  # CLIP width, patch grid, mask size
T_OF = {"avs-s4": 5, "avs-ms3": 5, "music-avqa": 12}   # shorter AVQA clips than 60 s: fast


def make_store(root: Path, task: str, n: int = 12, seed: int = 0, D: int = D, G: int = G, S: int = S,
               T_of: dict | None = None, patches: bool = True) -> Path:
    """n clips: half train, a quarter val and test (VGG-SS: train and test). D: CLIP width, G:
    patch grid, S: mask size, T_of: clip length per task (default T_OF, else 10). patches=False:
    no patches array, the grid recorded (attrs patch_grid), as stage one makes such a store. The
    dense benchmarks: make_dense_store."""
    if task in DENSE:
        return make_dense_store(root, task, max(n, 8), seed, D=D, G=G, patches=patches)
    rng = np.random.default_rng([seed, TASKS.index(task)])
    T = (T_OF if T_of is None else T_of).get(task, 10)
    ids = [f"{task}-{i}" for i in range(n)]
    cut = [n // 2, n // 2 + n // 4]
    splits = {"train": list(range(cut[0])), "val": list(range(cut[0], cut[1])), "test": list(range(cut[1], n))}
    if task == "vggss":
        splits = {"train": splits["train"], "test": splits["val"] + splits["test"]}
    path = root / f"{task}.zarr"
    fs = create(path, ids, {"audio": ((T, 128), "float16"), "visual": ((T, D), "float16"),
                            **({"patches": ((T, G * G, D), "float16")} if patches else {})},
                {"task": task, "dataset": task, "T": T, "splits": splits, "classes": CLASSES[task],
                 "random_weights": True, "prompt_names": list(TASKS), **({} if patches else {"patch_grid": G})})
    for name, shape in (("audio", (T, 128)), ("visual", (T, D)), ("patches", (T, G * G, D))):
        values = rng.standard_normal(size=(n, *shape), dtype=np.float32).astype(np.float16)
        if name != "patches" or patches:   # drawn all the same: the other arrays as with patches
            fs.put(name, values)
    for name, values in targets(task, n, T, S, rng).items():
        fs.put(name, values)
    fs.put("vocab_emb", rng.normal(size=(len(VOCAB), D)).astype(np.float32), per_clip=False)
    fs.put("task_emb", rng.normal(size=(len(TASKS), D)).astype(np.float32), per_clip=False)
    if CLASSES[task]:
        fs.put("valid_ids", VOCAB.valid_ids(task), per_clip=False)
    if task == "music-avqa":
        questions(fs, n, splits, D, rng)
    fs.mark_done(list(range(n)), [T] * n)
    return path


def targets(task: str, n: int, T: int, S: int, rng) -> dict[str, np.ndarray]:
    if task == "ave":
        labels = rng.integers(0, 29, (n, T)).astype(np.int16)
        return {"labels": labels, "video_label": labels[:, 0].copy()}
    if task == "llp":
        gt_a, gt_v = (rng.random((n, 25, T)) < 0.05).astype(np.uint8), (rng.random((n, 25, T)) < 0.05).astype(np.uint8)
        return {"video_labels": (gt_a | gt_v).any(-1).astype(np.uint8), "gt_audio": gt_a, "gt_visual": gt_v}
    if task == "vggss":
        xy = rng.uniform(0, 0.5, (n, 2, 2))
        return {"boxes": np.concatenate([xy, xy + 0.4], -1), "box_count": np.full(n, 2, np.int8)}
    masks = np.zeros((n, T, S, S), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, S // 2, 2)
        masks[i, :, y:y + S // 3, x:x + S // 3] = rng.integers(1, 71) if task == "avss" else 1
    valid = np.ones((n, T), np.uint8)
    if task == "avs-s4":
        valid[: n // 2, 1:] = 0          # train clips: the first frame only
    return {"masks": masks, "mask_valid": valid}


def questions(fs, n: int, splits: dict, D: int, rng) -> None:
    clip = np.repeat(np.arange(n), 3).astype(np.int32)               # 3 questions a video
    split_of = np.zeros(n, np.int8)
    for k, s in enumerate(("train", "val", "test")):
        split_of[splits[s]] = k
    fs.put("question_clip", clip, per_clip=False)
    fs.put("question_split", split_of[clip], per_clip=False)
    fs.put("question_answer", rng.integers(0, 41, len(clip)).astype(np.int16), per_clip=False)
    fs.put("question_type", rng.integers(0, 9, len(clip)).astype(np.int8), per_clip=False)
    fs.put("question_emb", rng.normal(size=(len(clip), D)).astype(np.float16), per_clip=False)
    fs.set_attrs(question_splits=["train", "val", "test"], question_types=AVQA_TYPES, answers=CLASSES["music-avqa"])


def make_stores(root: Path, tasks=None, n: int = 12, no_patches=(), **shapes) -> str:
    """Stores for `tasks` (default: every benchmark) under root, those of `no_patches` without
    patch tokens; returns the `stores` template ("<root>/{task}.zarr")."""
    from trainer.tasks import BENCHMARKS

    tasks = tuple(BENCHMARKS) if tasks is None else tasks
    for t in tasks:
        make_store(root, t, n, patches=t not in no_patches, **shapes)
    return str(root / "{task}.zarr")


def on_loss_call(n: int, action) -> dict:
    """trainer.tasks.BENCHMARKS with every loss wrapped so that the n-th loss call (training step
    n) runs `action` first (tests patch it into trainer.train)."""
    from dataclasses import replace

    from trainer.tasks import BENCHMARKS
    calls = {"n": 0}

    def wrap(loss):
        def counted(out, batch):
            calls["n"] += 1
            if calls["n"] == n:
                action()
            return loss(out, batch)
        return counted
    return {name: replace(b, losses={k: wrap(f) for k, f in b.losses.items()}) for name, b in BENCHMARKS.items()}


# ----------------------------------------------------------------------------- dense stores
DENSE = ("unav100", "activitynet", "desed")
DENSE_HOP = 0.25


def dense_classes(task: str, k: int = 4) -> list[str]:
    """The first k of the task's class names (stage one's, pipeline.vocab), or k made-up ones."""
    names = CLASSES.get(task) or [f"{task} event {c}" for c in range(k)]
    return list(names)[:k]


def make_dense_store(root: Path, task: str, n: int = 16, seed: int = 0, steps: tuple[int, int] = (24, 64),
                     classes: list[str] | None = None, D: int = D, G: int = G, audio_only: float = 0.25,
                     signal: float = 2.0, hop: float = DENSE_HOP, time_chunk: int = 16,
                     splits: dict | None = None, patches: bool = True) -> Path:
    """An any-length dense store (interfaces points 2-5): clips of `steps` (min, max) steps of
    `hop` seconds, time-chunked; 1 to 3 planted events a clip (fractional seconds, classes may
    overlap), the features of an event's steps carrying its class's pattern (`signal` x a fixed
    random vector per class, in audio and, where the clip has a picture, visual); the last
    `audio_only` fraction of the clips has no picture (visual_length 0, no visual or patch
    chunks, as the store writes audio-only clips). Classes: the first 4 of the benchmark's.
    shared/class_emb: a random embedding per class. Splits: half train, a quarter val and test
    (DESED, which has no val split: half train, half test), unless `splits` is given.
    patches=False: no patches array (attrs patch_grid G), as stage one makes them by default;
    every other array as with patches."""
    rng = np.random.default_rng([seed, sum(map(ord, task))])
    classes = classes or dense_classes(task)
    K = len(classes)
    T = steps[1]
    ids = [f"{task}-{i}" for i in range(n)]
    if splits is None:
        cut = [n // 2, n // 2 + n // 4]
        splits = {"train": list(range(cut[0])), "val": list(range(cut[0], cut[1])), "test": list(range(cut[1], n))}
        if task == "desed":
            splits = {"train": splits["train"], "test": splits["val"] + splits["test"]}
    prompts = list(TASKS) + [t for t in DENSE if t not in TASKS]
    path = root / f"{task}.zarr"
    fs = create(path, ids, {"audio": ((T, 128), "float16"), "visual": ((T, D), "float16"),
                            **({"patches": ((T, G * G, D), "float16")} if patches else {})},
                {"task": task, "dataset": task, "T": 0, "hop": hop, "splits": splits, "classes": classes,
                 "random_weights": True, "prompt_names": prompts, **({} if patches else {"patch_grid": G})},
                time_chunk=time_chunk)
    pattern_a, pattern_v = rng.standard_normal((K, 128)), rng.standard_normal((K, D))
    E = 3
    segments = np.full((n, E, 2), np.nan, np.float32)
    labels = np.full((n, E), -1, np.int16)
    lengths = rng.integers(steps[0], steps[1] + 1, n)
    picture = np.arange(n) < n - round(audio_only * n)
    checks = []
    for i in range(n):
        L = int(lengths[i])
        a = rng.standard_normal((L, 128))
        v = rng.standard_normal((L, D))
        for e in range(int(rng.integers(1, E + 1))):
            c = int(rng.integers(K))
            dur = rng.uniform(0.15, 0.6) * L * hop
            start = rng.uniform(0, L * hop - dur)
            segments[i, e], labels[i, e] = (start, start + dur), c
            k0, k1 = int(start / hop), int(np.ceil((start + dur) / hop))     # the steps it touches
            a[k0:k1] += signal * pattern_a[c]
            v[k0:k1] += signal * pattern_v[c]
        p = np.repeat(v[:, None], G * G, 1) + 0.1 * rng.standard_normal((L, G * G, D))
        values = {"audio": a.astype(np.float16)}
        if picture[i]:                 # an audio-only clip has no visual or patch chunks (the store reads zeros)
            values |= {"visual": v.astype(np.float16), "patches": p.astype(np.float16)}
        if not patches:
            values.pop("patches", None)
        checks.append(fs.write_clip(i, values) | ({} if picture[i] else
                                                  fs.absent(i, ["visual", "patches"][:1 + patches])))
    fs.put("segments", segments)
    fs.put("segment_labels", labels)
    fs.put("duration", (lengths * hop).astype(np.float32))
    fs.put("vocab_emb", rng.normal(size=(len(VOCAB), D)).astype(np.float32), per_clip=False)
    fs.put("task_emb", rng.normal(size=(len(prompts), D)).astype(np.float32), per_clip=False)
    fs.put("class_emb", rng.normal(size=(K, D)).astype(np.float32), per_clip=False)
    fs.mark_done(list(range(n)), lengths.tolist(), checks, audio_lengths=lengths.tolist(),
                 visual_lengths=np.where(picture, lengths, 0).tolist())
    return path
