"""Training data from the feature stores only: per-task samples, batch reads, the task sampler.

    stores = open_tasks(resolve_tasks("all"), "features/{task}.zarr")
    sampler = TaskSampler({t: s.n("train") for t, s in stores.items()}, 64, dict.fromkeys(stores, 1), seed=0)
    data = BatchDataset(stores, {h: m.Head.uses_patches for h, m in HEADS.items()})   # head -> reads patches
    loader = make_loader(data, sampler, workers=2, prefetch=4, pin=True)
    for batch in loader:   # {"task": name, "state": sampler state after it, "audio": (64, T, 128), ...}
        batch = to_device(batch, device, feature_stats(stores))

Decisions (the paper is silent):
- A task is a benchmark (trainer.tasks.BENCHMARKS; the names of the stores and of the run
  directory); what a batch reads beside the features is its Benchmark's `targets`. Where a
  Benchmark says `questions` (MUSIC-AVQA) its samples are QUESTIONS (rows of the store's
  question table, features of their video, the question's CLIP embedding as the prompt); every
  other task's samples are clips, with its task prompt's CLIP embedding as prompt: the row of
  shared/task_emb named by the store's attrs["prompt_names"] (stores older than that attribute:
  the order of attrs["task_prompts"]).
- One batch is one task. The batch's task is drawn at step s from a generator seeded with
  (seed, s), so the sequence depends on nothing but the seed and the weights. Task k's n-th
  batch is slice n % per_epoch of a permutation seeded with (seed, k, n // per_epoch): each
  task runs through its own epochs, dropping the last partial batch. A task with fewer
  training samples than the batch size uses all of them as its batch. The task's k is
  task_seed(name), so no task's batches depend on which other benchmarks exist.
- The sampler's state ({"step", "counts"}) travels with each batch, so the state saved in a
  checkpoint is that of the last batch trained on, however far the loader has read ahead.
- In a distributed run every process draws the same task and the same global batch and takes
  its share indices[rank::world] (a task drawn in runs of one video, `questions_per_video`:
  a contiguous share, so runs stay whole): the global batch is batch_size, as in a single
  process.
- Audio, visual and patch features are standardised per channel with statistics of the
  training clips, pooled over the tasks (feature_stats; kept in every checkpoint, so evaluation
  uses the training statistics). An affine map the input projections could learn, but features
  of random-weight VGGish are ~0.005 in size, which Adam at lr 1e-4 takes long to scale up.
  `standardise=false` feeds the raw features (HAN does).
- A damaged store is refused: open_task runs FeatureStore.check (every chunk file of every done
  clip there, of the size recorded when it was written: one stat a chunk, ~0.8 s for an
  LLP-sized store of 71k chunks), and a chunk whose bytes changed fails its read (the CRC32C in
  every chunk) with a StoreError naming the store, the array and the clip.
- Batches are read whole: one orthogonal read per array of the sorted unique clips (a clip's
  arrays are one chunk each), so a loader process decodes each chunk once. Features stay
  float16 until they reach the device; LLP and the dense heads (no SPM) never read patches.
  A store may hold none (stage one's setting `patches`: the dense three by default): its
  patch grid is then the one it records (attrs["patch_grid"]), checked against the other
  stores' as ever; a head that reads patches on it is refused (open_task), and the patch
  statistics come from the stores that hold them. Where clips repeat in
  a batch (questions of one video), the features stay one row per clip and `clip_rows` (B,)
  gives each sample's row: they are copied, moved and standardised once per video.
- Time axes count the store's feature steps (`length`, T); TaskStore.hop is the seconds per
  step (attrs["hop"], 1 in stores made before it). Every batch has `visual_valid` (B,) bool:
  False where the sample's clip has no picture (an audio-only .wav source, visual_length 0;
  its visual and patch rows are zeros, never frames, and the model masks them).
"""

from __future__ import annotations

import os
import signal
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.store import FeatureStore, StoreError, damage_message
from trainer.tasks import BENCHMARKS, HEADS
from trainer.tasks.spec import Benchmark

LONG = ("labels", "answer")  # targets the losses index with
SPLITS = ("train", "val", "test")


def resolve_tasks(tasks: str | list[str]) -> list[str]:
    """"all" or a comma list (or a list) of task names, checked, in BENCHMARKS order."""
    names = list(BENCHMARKS) if tasks in ("all", ["all"]) else (
        [t.strip() for t in tasks.split(",") if t.strip()] if isinstance(tasks, str) else list(tasks))
    unknown = [t for t in names if t not in BENCHMARKS]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {unknown or names}; tasks: all or a comma list of {', '.join(BENCHMARKS)}")
    return [t for t in BENCHMARKS if t in names]


@dataclass
class TaskStore:
    """What training needs from one task's store, read once in the main process."""

    task: str
    path: Path
    T: int                                # steps per clip (any-length store: its longest clip)
    visual_dim: int
    n_patches: int
    vocab_emb: np.ndarray                 # (V, D) float32; where its Benchmark says class_prompts,
                                          # shared/class_emb (K, D): one row a class, in class order
    valid_ids: np.ndarray | None          # (K,) the task's class tokens (targets are positions in it);
                                          # None where its Benchmark has no class_tokens, even where
                                          # the store has them (S4)
    classes: list[str]
    random_weights: bool
    samples: dict[str, np.ndarray] = field(default_factory=dict)   # split -> sample indices
    questions: dict[str, np.ndarray] = field(default_factory=dict)  # questions: clip, answer, emb
    hop: float = 1.0                      # seconds per step (attrs["hop"]; absent: 1)
    has_patches: bool = True              # the store holds patch tokens (n_patches is then still the
                                          # grid its CLIP model gives: attrs["patch_grid"] squared)

    @property
    def spec(self) -> Benchmark:
        return BENCHMARKS[self.task]

    @property
    def head(self) -> str:
        return self.spec.head

    def n(self, split: str) -> int:
        return len(self.samples.get(split, ()))

    def clip_index(self, samples: np.ndarray) -> np.ndarray:
        return self.questions["clip"][samples] if self.questions else np.asarray(samples)


def open_task(task: str, path: Path | str) -> TaskStore:
    """One task's store, refused when one of its done clips is damaged: a chunk file missing, or of
    another size than when it was written (FeatureStore.check, one stat a chunk). A chunk whose
    bytes changed fails later, at its read, with a StoreError naming the clip."""
    fs = FeatureStore(path)
    attrs = fs.attrs
    if "targets_fingerprint" in attrs and attrs["targets_fingerprint"] is None:
        raise StoreError(f"{path}: its targets are half-written (an `avu extract` run stopped while writing "
                         f"them); run the same command again to finish them")
    damage = fs.check()
    if damage:
        raise StoreError(damage_message(fs.path, damage))
    if attrs.get("task", attrs.get("dataset")) not in (task, None):
        raise StoreError(f"{path}: holds {attrs.get('task')!r}, not {task!r}")
    if task not in BENCHMARKS:
        raise StoreError(f"{path}: unknown task {task!r}")
    spec = BENCHMARKS[task]
    shared = dict(fs.group["shared"].arrays()) if "shared" in fs.group else {}
    for name in ("vocab_emb", "task_emb"):
        if name not in shared:
            raise StoreError(f"{path}: no shared/{name}; extract it with `avu extract --dataset {task}`")
    visual = fs.group["visual"].shape                 # (N, T, D)
    if fs.has_patches:
        n_patches = int(fs.group["patches"].shape[2])
    elif attrs.get("patch_grid"):
        n_patches = int(attrs["patch_grid"]) ** 2
    else:
        raise StoreError(f"{path}: holds no patch tokens and records no patch_grid; extract it again with "
                         f"`avu extract --dataset {task}`")
    if HEADS[spec.head].Head.uses_patches and not fs.has_patches:
        raise no_patches(path, task, spec.head)
    valid = fs.shared("valid_ids").astype(np.int64) if "valid_ids" in shared and spec.class_tokens else None
    vocab = fs.shared("vocab_emb")
    if spec.class_prompts:   # its head scores the class prompts: they take the vocabulary's place
        if "class_emb" not in shared:
            raise StoreError(f"{path}: no shared/class_emb (the class prompts' embeddings); extract it with "
                             f"`avu extract --dataset {task}`")
        vocab = fs.shared("class_emb")
    done = fs.done()
    # T: the clip length of a fixed-T store; of an any-length store (attrs T = 0), its longest done clip
    T = int(attrs.get("T") if "T" in attrs else visual[1]) or int(max(fs.read("length", done).max(initial=1), 1))
    ts = TaskStore(task, Path(path), T, int(visual[-1]), n_patches, vocab.astype(np.float32),
                   valid, list(attrs.get("classes", [])), fs.random_weights, hop=fs.hop,
                   has_patches=fs.has_patches)
    if spec.questions:
        clip = fs.shared("question_clip").astype(np.int64)
        split_names = list(attrs["question_splits"])
        split_of = fs.shared("question_split")
        ts.questions = {"clip": clip, "answer": fs.shared("question_answer").astype(np.int64)}
        ok = np.isin(clip, done)
        ts.samples = {s: np.flatnonzero((split_of == k) & ok) for k, s in enumerate(split_names)}
    else:
        ts.samples = {s: fs.split(s) for s in attrs.get("splits", {})}
    ts.samples = {s: idx for s, idx in ts.samples.items() if len(idx)}
    return ts


def open_tasks(tasks: list[str], template: str) -> dict[str, TaskStore]:
    """Every task's store (`template` holds {task}); all must share features and vocabulary."""
    stores = {t: open_task(t, Path(template.format(task=t)).expanduser()) for t in tasks}
    dims = {(s.visual_dim, s.n_patches) for s in stores.values()}
    if len(dims) > 1:
        raise StoreError("stores differ in CLIP width or patch grid: "
                         + ", ".join(f"{t} {s.visual_dim}/{s.n_patches}" for t, s in stores.items()))
    return stores


# ----------------------------------------------------------------------------- reading batches
def no_patches(path, task: str, head: str) -> StoreError:
    """The error for a head that reads patches on a store extracted without them."""
    return StoreError(f"{path}: holds no patch tokens (extracted with patches false), but the {task} head "
                      f"({head}) reads them; extract it again with patches.{task}=true")


class TaskData:
    """Reads whole batches of one task; opens its store lazily, once per process."""

    def __init__(self, ts: TaskStore, with_patches: bool):
        if with_patches and not ts.has_patches:
            raise no_patches(ts.path, ts.task, ts.head)
        self.ts = ts
        self.arrays = ("audio", "visual") + (("patches",) if with_patches else ()) + ts.spec.targets
        self._fs: FeatureStore | None = None
        self._prompt: np.ndarray | None = None

    def __getstate__(self) -> dict:  # the store handle is not sent to loader processes
        return {**self.__dict__, "_fs": None, "_prompt": None}

    @property
    def fs(self) -> FeatureStore:
        if self._fs is None:
            self._fs = FeatureStore(self.ts.path)
            self._prompt = self._fs.shared("task_emb")[prompt_row(self._fs, self.ts.task)]
        return self._fs

    def read(self, split: str, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The samples at `positions` of the split's sample list."""
        samples = self.ts.samples[split][np.asarray(positions, dtype=np.int64)]
        clips = self.ts.clip_index(samples)
        unique, inverse = np.unique(clips, return_inverse=True)  # sorted reads; AVQA videos once
        shared = len(unique) < len(clips)     # clips repeat: MUSIC-AVQA's questions of one video
        # every batch has `length` (the model's frame_valid); features of an any-length store are
        # read up to the batch's longest clip (FeatureStore.read)
        batch = {name: self.fs.read(name, unique) for name in dict.fromkeys(self.arrays + ("length",))}
        for name in batch:                    # features once per clip where clips repeat (the
            if not (shared and name in FEATURES):   # model runs TPM + SPM per clip), targets per sample
                batch[name] = batch[name][inverse]
        if shared:
            batch["clip_rows"] = inverse      # (B,): each sample's row in the features
        for name in LONG:
            if name in batch:
                batch[name] = batch[name].astype(np.int64)
        batch["length"] = batch["length"].astype(np.int64)      # (B,) the clips' steps
        batch["visual_valid"] = ~self.fs._picture_missing()[clips]     # (B,) False: no picture (audio only)
        batch["hop"] = np.full(len(samples), self.ts.hop, np.float32)   # (B,) seconds per step (dense targets)
        if self.ts.questions:
            q = self.ts.questions
            batch["answer"] = q["answer"][samples]
            batch["prompt"] = self.question_emb[samples]
        else:
            batch["prompt"] = np.repeat(self._prompt[None].astype(np.float16), len(samples), axis=0)
        batch["clip_index"], batch["sample_index"] = clips, samples
        return batch

    @property
    def question_emb(self) -> np.ndarray:
        if "emb" not in self.ts.questions:   # read once per process (Q x D float16)
            self.ts.questions["emb"] = self.fs.shared("question_emb")
        return self.ts.questions["emb"]


def prompt_row(fs: FeatureStore, task: str) -> int:
    """The row of shared/task_emb that holds the task's prompt, found by name."""
    names = list(fs.attrs.get("prompt_names") or fs.attrs.get("task_prompts") or ())
    if task not in names:
        raise StoreError(f"{fs.path}: shared/task_emb has no row for {task!r} (rows: {', '.join(names) or 'unnamed'}); "
                         f"extract the store again with `avu extract --dataset {task}`")
    return names.index(task)


class BatchDataset(torch.utils.data.Dataset):
    """Indexed by a batch spec {"task", "split", "indices": positions in the split, ...}: returns
    the whole batch (the loader runs with batch_size=None). Other keys of the spec pass through."""

    def __init__(self, stores: dict[str, TaskStore], uses_patches: dict[str, bool]):
        self.data = {t: TaskData(s, uses_patches[s.head]) for t, s in stores.items()}

    def __getitem__(self, spec: dict) -> dict:
        batch = self.data[spec["task"]].read(spec["split"], spec["indices"])
        return {**{k: v for k, v in spec.items() if k not in ("indices", "split")}, **batch}


# ----------------------------------------------------------------------------- samplers
def _draw(seed: int, step: int, tasks: list[str], p: np.ndarray) -> str:
    return tasks[int(np.random.default_rng([seed, step]).choice(len(tasks), p=p))]


class TaskSampler(torch.utils.data.Sampler):
    """Endless training batch specs; the task of each step drawn with `weights`, seeded."""

    def __init__(self, sizes: dict[str, int], batch_size: int, weights: dict[str, float], seed: int,
                 rank: int = 0, world: int = 1, state: dict | None = None,
                 groups: dict[str, np.ndarray] | None = None, run: int = 1):
        self.tasks = [t for t in sizes if sizes[t] > 0 and weights.get(t, 0) > 0]
        if not self.tasks:
            raise ValueError("no task has training samples and a weight > 0")
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} does not split over {world} processes")
        w = np.array([float(weights[t]) for t in self.tasks])
        self.p = w / w.sum()
        self.sizes, self.seed, self.rank, self.world = sizes, seed, rank, world
        self.batch = {t: min(batch_size, sizes[t] - sizes[t] % world) for t in self.tasks}
        self.per_epoch = {t: sizes[t] // self.batch[t] for t in self.tasks}
        self.state = state or {"step": 0, "counts": dict.fromkeys(self.tasks, 0)}
        # groups[task]: the clip of each training sample; its epochs are drawn in runs of `run`
        self.groups = {t: np.asarray(g) for t, g in (groups or {}).items() if t in self.tasks and run > 1}
        self.run = run

    def steps_per_epoch(self) -> int:
        """As many steps as all tasks' training batches together (the paper's epoch, jointly)."""
        return sum(self.per_epoch.values())

    def indices(self, task: str, count: int) -> np.ndarray:
        """The global batch of the task's count-th draw."""
        k, B = task_seed(task), self.batch[task]
        epoch, n = divmod(count, self.per_epoch[task])
        rng = np.random.default_rng([self.seed, k, epoch])
        if task in self.groups:
            perm = grouped_permutation(rng, self.groups[task], self.run)
        else:
            perm = rng.permutation(self.sizes[task])
        return perm[n * B:(n + 1) * B]

    def __iter__(self):
        step, counts = self.state["step"], dict(self.state["counts"])
        while True:
            task = _draw(self.seed, step, self.tasks, self.p)
            idx = self.indices(task, counts[task])
            # each process its share: strided, or contiguous where runs of one video must stay together
            idx = np.array_split(idx, self.world)[self.rank] if task in self.groups else idx[self.rank::self.world]
            counts[task] += 1
            step += 1
            yield {"task": task, "split": "train", "indices": idx,
                   "state": {"step": step, "counts": dict(counts)}}


def task_seed(task: str) -> int:
    """A task's own seed for its epochs' permutations, from its name (CRC-32): adding or
    reordering benchmarks leaves every other task's batches as they were."""
    return zlib.crc32(task.encode())


def grouped_permutation(rng: np.random.Generator, groups: np.ndarray, run: int) -> np.ndarray:
    """A permutation of range(len(groups)) made of runs of up to `run` samples of one group:
    each group's samples in random order, cut into runs of `run` (its last run shorter), the
    runs in random order. Every sample once, as a plain permutation."""
    order = rng.permutation(len(groups))
    order = order[np.argsort(groups[order], kind="stable")]     # by group, shuffled within each
    g = groups[order]
    first = np.r_[True, g[1:] != g[:-1]]                        # a group starts here
    pos = np.arange(len(g)) - np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
    runs = np.split(order, np.flatnonzero(first | (pos % run == 0))[1:])
    return np.concatenate([runs[i] for i in rng.permutation(len(runs))]) if runs else order


def split_specs(task: str, split: str, n: int, batch_size: int) -> list[dict]:
    """Batch specs covering a split's n samples in order (evaluation)."""
    return [{"task": task, "split": split, "indices": np.arange(i, min(i + batch_size, n))}
            for i in range(0, n, batch_size)]


def make_loader(dataset: BatchDataset, specs, workers: int, prefetch: int, pin: bool,
                persistent: bool = False) -> torch.utils.data.DataLoader:
    """A loader over batch specs (an iterable sampler or a list). Its own generator keeps it from
    drawing on the global torch RNG, which dropout (and so a resumed run) depends on. Its worker
    processes ignore Ctrl-C and a SIGTERM sent to the process group (worker_ignores_stop_signals):
    the main process decides when to stop, and shuts them down itself."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=specs, num_workers=workers, pin_memory=pin,
        prefetch_factor=prefetch if workers else None, persistent_workers=persistent and workers > 0,
        generator=torch.Generator().manual_seed(0), worker_init_fn=worker_ignores_stop_signals if workers else None)


def worker_ignores_stop_signals(worker_id: int) -> None:
    """worker_init_fn of every loader: SIGINT and SIGTERM from anyone but the main process are
    ignored. A terminal's Ctrl-C and a scheduler's SIGTERM (preemption, time limit) go to every
    process of the job; a worker killed by them makes the main process fail on its next batch
    ("DataLoader worker ... is killed by signal") before it can save. The main process stops at
    the end of its step (trainer/train.py StopFlag), then shuts its workers down as usual.

    SIGTERM from the main process itself still ends a worker at once: the DataLoader sends it
    to a worker that does not exit when told to (Process.terminate). So SIGTERM is not set to
    SIG_IGN but blocked, and a thread takes it with sigwaitinfo, which says who sent it; the
    worker exits (status 0, as torch's own handler does) only if that is the parent. Where
    sigwaitinfo is missing (macOS, Windows) SIGTERM is ignored outright; on macOS terminate()
    then cannot end a stuck worker (Windows terminates a process without a signal)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "SIGTERM"):
        return
    if not hasattr(signal, "sigwaitinfo"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    parent = os.getppid()
    # blocked before any other thread starts (at this point the worker has one), so no thread
    # takes SIGTERM but the waiter; threads started later inherit the mask
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)

    threading.Thread(target=wait, name="avu-sigterm", daemon=True).start()


FEATURES = ("audio", "visual", "patches")


def feature_stats(stores: dict[str, TaskStore], clips: int = 64, patch_clips: int = 16) -> dict[str, dict]:
    """Per-channel mean and std of audio, visual and patches over training clips of every task
    (pooled: one input space for the shared model): up to `clips` clips a task, evenly spaced,
    `patch_clips` for the patches, of the stores that hold them. Read clip by clip, summed in
    float64. Where no training clip has a picture (every task audio-only: a DESED-only run on its
    .wav files), or no store holds patches, visual or patches are left as they are (mean 0, std
    1): the model masks them or no head reads them, there is nothing to standardise."""
    sums = {n: [0.0, 0.0, 0] for n in FEATURES}
    width: dict[str, int] = {}
    for s in stores.values():
        train = np.unique(s.clip_index(s.samples.get("train", np.zeros(0, np.int64))))
        if not len(train):
            continue
        fs = FeatureStore(s.path)
        pictured = np.setdiff1d(train, fs.audio_only())     # audio-only clips' zero rows are no frames
        width.setdefault("patches", fs.group["visual"].shape[-1])    # patches share the CLIP width
        for name in FEATURES if s.has_patches else FEATURES[:2]:
            width.setdefault(name, fs.group[name].shape[-1])
            n = clips if name != "patches" else patch_clips
            pool = train if name == "audio" else pictured
            for i in pool[np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)] if len(pool) else ():
                x = fs.read(name, int(i)).astype(np.float64).reshape(-1, fs.group[name].shape[-1])
                acc = sums[name]
                acc[0], acc[1], acc[2] = acc[0] + x.sum(0), acc[1] + (x * x).sum(0), acc[2] + len(x)
    for s in stores.values():   # MUSIC-AVQA's question embeddings (the prompt of its samples)
        train = s.samples.get("train", np.zeros(0, np.int64))
        if s.questions and len(train):
            x = FeatureStore(s.path).shared("question_emb")[np.sort(train)].astype(np.float64)
            sums["question"] = [x.sum(0), (x * x).sum(0), len(x)]
    out = {}
    if not sums["audio"][2]:
        raise StoreError("no training clips to compute feature statistics from")
    for name, (total, squares, count) in sums.items():
        if not count:                   # no picture in any training clip (audio-only tasks)
            out[name] = {"mean": torch.zeros(width[name]), "std": torch.ones(width[name])}
            continue
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
        std = np.maximum(std, 1e-2 * np.median(std) + 1e-12)   # dead channels: no division by ~0
        out[name] = {"mean": torch.tensor(mean, dtype=torch.float32), "std": torch.tensor(std, dtype=torch.float32)}
    return out


def to_device(batch: dict, device: torch.device, norm: dict | None = None) -> dict:
    """Tensors to the device (non-blocking from pinned memory); features to float32 there and,
    given `norm` (feature_stats), standardised per channel: audio, visual, patches, and the
    prompt where it is a MUSIC-AVQA question (batches with "answer"; a task prompt is one fixed
    vector and stays as it is). CLIP text embeddings of questions from one template share most
    of their direction (cosine ~0.98 with the demo's random text tower, ~0.8 with real CLIP):
    standardised, the words that differ carry the signal."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k in ("audio", "visual", "patches", "prompt"):
                v = v.float()
            name = "question" if k == "prompt" and "answer" in batch else k
            if norm is not None and name in norm:
                v = (v - norm[name]["mean"].to(device)) / norm[name]["std"].to(device)
        out[k] = v
    return out
