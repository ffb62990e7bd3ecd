"""The multi-task trainer on fake stores (tests/fake_stores.py): sampler, checkpoints, Ctrl-C +
resume equal to an uninterrupted run, the run directory, DistributedDataParallel on 2 CPU processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError
from pipeline.store import FeatureStore
from trainer import checkpoint as ckpt
from cli import train_config
from trainer import train as T
from trainer.data import (BatchDataset, TaskSampler, feature_stats, make_loader, open_tasks, resolve_tasks,
                          to_device)
from trainer.rundir import load_run, read_log

from .fake_stores import make_stores

REPO = Path(__file__).resolve().parent.parent
TINY = ["d_model=16", "n_heads=2", "d_ff=16", "mask_channels=8", "batch_size=4", "eval_batch_size=8",
        "log_every=1", "lr=1e-3", "workers=0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> str:
    return make_stores(tmp_path_factory.mktemp("stores"))


def config(stores: str, *extra: str):
    return train_config([*TINY, f"stores={stores}", *extra])


def test_tasks_and_config():
    assert resolve_tasks("all") == ["ave", "llp", "vggss", "avs-s4", "avs-ms3", "avss", "music-avqa", "unav100",
                                    "activitynet", "desed"]
    assert resolve_tasks("llp, ave") == ["ave", "llp"]
    with pytest.raises(ValueError, match="unknown task"):
        resolve_tasks("ave,avqa")
    cfg = train_config()
    assert (cfg.lr, cfg.lr_decay, cfg.lr_decay_epochs, cfg.batch_size, cfg.epochs) == (1e-4, 0.1, 10, 64, 200)
    assert cfg.task_weights == {}          # the paper: uniform (a task left out of task_weights weighs 1)
    with pytest.raises(ConfigError, match="bogus"):
        train_config(["bogus=1"])


def test_ave_supervision_chooses_only_for_a_benchmark_with_a_choice():
    """`ave_supervision` picks the loss of AVE (full or weak) and of no other benchmark; `avu report`
    reads the same rule (Benchmark.supervision_of): the setting for AVE, None for the rest."""
    from trainer.tasks import BENCHMARKS
    for setting in ("full", "weak"):
        cfg = train_config([f"ave_supervision={setting}"])
        assert {t: T.supervision(cfg, t) for t in BENCHMARKS} == {t: setting if t == "ave" else "full"
                                                                   for t in BENCHMARKS}
        assert {t: b.supervision_of(setting) for t, b in BENCHMARKS.items()} == {
            t: setting if t == "ave" else None for t in BENCHMARKS}


def test_tpm_scales_follow_the_longest_clip_trained_on(stores, tmp_path):
    """The model's T (and so its TPM window scales) is the longest clip of the stores trained on:
    AVSBench alone 5 s, with AVE 10 s, with MUSIC-AVQA its 12 s; the checkpoint records it."""
    from trainer.data import open_tasks
    from trainer.model import default_scales

    for tasks, longest in (("avs-s4,avs-ms3", 5), ("ave,avs-s4", 10), ("ave,music-avqa", 12)):
        mcfg = T.model_config(config(stores, f"tasks={tasks}"), open_tasks(tasks.split(","), stores))
        assert mcfg.T == longest and mcfg.scales == default_scales(longest), tasks
    assert default_scales(5) == (2, 4, 0) and default_scales(12) == (2, 4, 8, 0)
    run = T.train(config(stores, "tasks=ave,music-avqa", "max_steps=1"), tmp_path / "run", quiet=True)
    assert _weights(run)["model_config"]["T"] == 12


def test_sampler_is_seeded_weighted_resumable_and_shards(stores):
    sizes = {"ave": 30, "llp": 30, "avss": 30}
    s = TaskSampler(sizes, 8, {"ave": 3, "llp": 1, "avss": 0}, seed=1)
    it = iter(s)
    specs = [next(it) for _ in range(400)]
    counts = Counter(b["task"] for b in specs)
    assert set(counts) == {"ave", "llp"} and 0.68 < counts["ave"] / 400 < 0.82
    again = [next(iter(TaskSampler(sizes, 8, {"ave": 3, "llp": 1, "avss": 0}, seed=1, state=specs[99]["state"])))]
    assert again[0]["task"] == specs[100]["task"] and np.array_equal(again[0]["indices"], specs[100]["indices"])
    ave = [b["indices"] for b in specs if b["task"] == "ave"][:3]     # 3 batches of 8 per epoch of 30
    assert len(np.unique(np.concatenate(ave))) == 24                  # an epoch draws without replacement
    shards = [next(iter(TaskSampler(sizes, 8, {"ave": 1}, 0, rank=r, world=2))) for r in (0, 1)]
    whole = next(iter(TaskSampler(sizes, 8, {"ave": 1}, 0)))
    assert sorted(np.concatenate([b["indices"] for b in shards]).tolist()) == sorted(whole["indices"].tolist())


def test_loader_reads_each_task_with_workers(stores):
    ts = open_tasks(resolve_tasks("all"), stores)
    sampler = TaskSampler({t: s.n("train") for t, s in ts.items()}, 4, dict.fromkeys(ts, 1), 0)
    loader = make_loader(BatchDataset(ts, {"ave": True, "llp": False, "vggss": True, "avs": True, "avqa": True,
                                       "dense": False}),
                         sampler, workers=1, prefetch=2, pin=False)
    seen = {}
    for batch, _ in zip(loader, range(60)):
        seen[batch["task"]] = batch
    assert set(seen) == set(ts)
    assert "patches" not in seen["llp"] and seen["ave"]["labels"].dtype == torch.int64
    assert seen["music-avqa"]["prompt"].shape == (4, 16) and seen["music-avqa"]["answer"].dtype == torch.int64
    assert seen["avss"]["masks"].shape == (4, 10, 16, 16) and seen["ave"]["audio"].dtype == torch.float16


def test_questions_of_one_video_read_its_features_once(stores):
    """Where clips repeat in a batch (3 questions a video in the fake store), features come one
    row per clip and `clip_rows` maps every question to its video's row; targets and prompts
    stay one per question. A batch of distinct clips is read as before, without clip_rows."""
    ts = open_tasks(["music-avqa", "ave"], stores)
    data = BatchDataset(ts, {"avqa": True, "ave": True})
    fs = FeatureStore(ts["music-avqa"].path)
    batch = data[{"task": "music-avqa", "split": "train", "indices": np.arange(6)}]
    clips = batch["clip_index"]
    assert len(np.unique(clips)) == 2 and len(clips) == 6
    for name in ("audio", "visual", "patches"):
        assert len(batch[name]) == 2
        assert np.array_equal(batch[name][batch["clip_rows"]], fs.read(name, clips)), name
    assert len(batch["prompt"]) == len(batch["answer"]) == 6
    assert not np.array_equal(batch["prompt"][0], batch["prompt"][1])   # each question its own
    ave = data[{"task": "ave", "split": "train", "indices": np.arange(4)}]
    assert "clip_rows" not in ave and len(ave["audio"]) == 4
    assert np.array_equal(ave["audio"], FeatureStore(ts["ave"].path).read("audio", ave["clip_index"]))


def test_features_and_question_prompts_are_standardised_with_training_statistics(stores):
    ts = open_tasks(["ave", "music-avqa"], stores)
    norm = feature_stats(ts)
    q = ts["music-avqa"]
    train = np.sort(q.samples["train"])
    emb = FeatureStore(q.path).shared("question_emb").astype(np.float64)
    assert np.allclose(norm["question"]["mean"].numpy(), emb[train].mean(0), atol=1e-5)
    assert not np.allclose(norm["question"]["mean"].numpy(), emb.mean(0), atol=1e-5)   # val/test not used
    data = BatchDataset(ts, {"ave": False, "avqa": True})
    raw = torch.utils.data.default_convert(data[{"task": "music-avqa", "split": "train", "indices": np.arange(8)}])
    out = to_device(raw, torch.device("cpu"), norm)
    expect = (raw["prompt"].float() - norm["question"]["mean"]) / norm["question"]["std"]
    assert torch.allclose(out["prompt"], expect)
    assert torch.allclose(out["audio"], (raw["audio"].float() - norm["audio"]["mean"]) / norm["audio"]["std"])
    raw = torch.utils.data.default_convert(data[{"task": "ave", "split": "train", "indices": np.arange(4)}])
    out = to_device(raw, torch.device("cpu"), norm)       # a task prompt is left as it is
    assert torch.equal(out["prompt"], raw["prompt"].float())


def test_statistics_of_audio_only_tasks_leave_the_missing_picture_alone(tmp_path):
    """Every training clip audio-only (a DESED-only run on its .wav files): audio is
    standardised with its training statistics, visual and patches are left as they are
    (mean 0, std 1; the model masks them), instead of "no training clips"."""
    from .fake_stores import make_dense_store

    path = make_dense_store(tmp_path, "desed", n=8, audio_only=1.0)
    ts = open_tasks(["desed"], str(tmp_path / "{task}.zarr"))
    norm = feature_stats(ts)
    fs = FeatureStore(path)
    train = np.unique(ts["desed"].clip_index(ts["desed"].samples["train"]))
    audio = np.concatenate([fs.read("audio", int(i)) for i in train]).astype(np.float64)
    assert np.allclose(norm["audio"]["mean"].numpy(), audio.mean(0), atol=1e-4)
    for name in ("visual", "patches"):
        width = fs.group[name].shape[-1]
        assert torch.equal(norm[name]["mean"], torch.zeros(width)) and torch.equal(norm[name]["std"], torch.ones(width))


def test_checkpoint_is_atomic_and_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save({"w": torch.ones(2), "rng": ckpt.rng_state(), "step": 3}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ckpt.save({"w": torch.zeros(2), "bad": Boom()}, path)
    state = ckpt.load(path)                                   # the old checkpoint, whole
    assert state["step"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]                 # no temporary file left
    marker = tmp_path / "ran"

    class Evil:                                           # loading it would call os.makedirs(marker)
        def __reduce__(self):
            return os.makedirs, (str(marker),)

    torch.save({"model": {"w": torch.ones(1)}, "f": Evil()}, tmp_path / "evil.pt")   # needs a pickled call
    with pytest.raises(ckpt.CheckpointError) as refused:
        ckpt.load(tmp_path / "evil.pt")
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'evil.pt'}: not loaded")
    assert "objects other than tensors and plain values" in message and "makedirs" in message
    assert "weights_only" not in message and not marker.exists()      # avu's words; nothing ran
    ckpt.set_rng_state(state["rng"])
    first = (torch.rand(3), np.random.rand(), __import__("random").random())
    ckpt.set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), first[0]) and np.random.rand() == first[1]
    assert __import__("random").random() == first[2]


def test_unreadable_checkpoints_name_the_file(tmp_path):
    good = ckpt.save({"w": torch.ones(5000), "step": 3}, tmp_path / "good.pt")
    whole = good.read_bytes()
    cases = {"cut.pt": whole[: len(whole) // 2], "empty.pt": b"", "text.pt": b"model: 1\nstep: 2\n" * 20,
             "noise.pt": bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8))}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ckpt.CheckpointError, match="cannot be read as a checkpoint") as err:
            ckpt.load(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: ") and f"({len(content)} bytes)" in str(err.value)
    with pytest.raises(ckpt.CheckpointError, match="the file is empty"):
        ckpt.load(tmp_path / "empty.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        ckpt.load(tmp_path / "absent.pt")
    assert ckpt.load(good)["step"] == 3


class _WorkerPid(torch.utils.data.Dataset):
    def __getitem__(self, spec):
        return os.getpid()


def _state(pid: int) -> str:
    """A process's state letter (R, S, Z, ...), "gone" once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_loader_workers_ignore_stop_signals_from_others_but_not_from_their_parent():
    """Ctrl-C and a scheduler's SIGTERM reach every process of the group: a loader process must
    not die of them (the main process decides when to stop). Sent by the main process itself
    (the DataLoader's Process.terminate of a stuck worker), SIGTERM still ends the worker."""
    loader = make_loader(_WorkerPid(), range(10**6), workers=1, prefetch=2, pin=False, persistent=True)
    it = iter(loader)
    pid = int(next(it))
    assert pid != os.getpid()
    for sig in (signal.SIGTERM, signal.SIGINT):         # from another process, as killpg's sender is
        subprocess.run([sys.executable, "-c", f"import os; os.kill({pid}, {int(sig)})"], check=True, timeout=60)
    import time
    time.sleep(0.5)
    assert _state(pid) not in ("Z", "gone")
    assert all(int(next(it)) == pid for _ in range(20))  # and it still serves batches
    os.kill(pid, signal.SIGTERM)                         # from its parent: exits at once
    deadline = time.monotonic() + 10
    while _state(pid) not in ("Z", "gone") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(pid) in ("Z", "gone")
    it._shutdown_workers()                               # reaps it; no error for a worker told to go
    assert _state(pid) == "gone"


def _at_loss_call(monkeypatch, n: int, action) -> dict:
    """Make training run `action` in its n-th loss call (step n); returns the real BENCHMARKS."""
    from tests.fake_stores import on_loss_call
    from trainer.tasks import BENCHMARKS
    monkeypatch.setattr(T, "BENCHMARKS", on_loss_call(n, action))
    return BENCHMARKS


def _assert_same_weights(whole: Path, run: Path, step: int) -> None:
    """The run ended at `step` with the uninterrupted run's sampler, weights and Adam state."""
    a, b = _weights(whole), _weights(run)
    assert b["step"] == step and a["sampler"] == b["sampler"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])


def _weights(run: Path) -> dict:
    return ckpt.load(run / "checkpoints" / "last.pt")


def test_ctrl_c_then_resume_equals_uninterrupted(stores, tmp_path, monkeypatch):
    """Dropout on, a loader process, validation in between; SIGINT during step 4 of 7."""
    args = ("tasks=ave,llp,avs-s4,music-avqa", "max_steps=7", "eval_every=3", "workers=1")
    whole = T.train(config(stores, *args), tmp_path / "whole", quiet=True)

    real = _at_loss_call(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGINT))   # what Ctrl-C sends
    run = tmp_path / "cut"
    T.train(config(stores, *args), run, quiet=True)
    assert _weights(run)["step"] == 4
    monkeypatch.setattr(T, "BENCHMARKS", real)
    with pytest.raises(ValueError, match=r"last\.pt records other settings.*weight_decay 0\.0 -> 0\.01"):
        T.train(train_config(["weight_decay=0.01"], resume_from=run), run, resume=True, quiet=True)
    T.train(train_config([], resume_from=run), run, resume=True, quiet=True)

    _assert_same_weights(whole, run, step=7)
    records = [(r["kind"], r["step"], r["task"]) for r in read_log(load_run(run))[0]]
    assert records == [(r["kind"], r["step"], r["task"]) for r in read_log(load_run(whole))[0]]


def test_run_stopped_before_its_first_checkpoint_resumes_from_step_0(stores, tmp_path, monkeypatch, capsys):
    """A run that died before its first checkpoint (a crash at step 3 here; kill -9 leaves the
    same folder): a plain start into it is refused and points at --resume; --resume with other
    settings than config.yaml's is refused; --resume starts from step 0, says so (even quiet),
    redoes metrics.jsonl and ends as an uninterrupted run does, bit for bit."""
    args = ("tasks=ave,llp", "max_steps=5", "eval_every=5")
    whole = T.train(config(stores, *args), tmp_path / "whole", quiet=True)

    def crash():
        raise RuntimeError("crash in step 3")

    real = _at_loss_call(monkeypatch, 3, crash)
    run = tmp_path / "cut"
    with pytest.raises(RuntimeError, match="crash in step 3"):
        T.train(config(stores, *args), run, quiet=True)
    monkeypatch.setattr(T, "BENCHMARKS", real)
    assert not (run / "checkpoints" / "last.pt").exists()
    assert [r["step"] for r in read_log(load_run(run))[0]] == [1, 2]

    with pytest.raises(FileExistsError, match="before its first checkpoint: --resume starts it again from step 0"):
        T.train(config(stores, *args), run, quiet=True)
    with pytest.raises(ValueError, match=r"config\.yaml records other settings.*lr 0\.001 -> 0\.002"):
        T.train(train_config(["lr=0.002"], resume_from=run), run, resume=True, quiet=True)
    with pytest.raises(ValueError, match=r"config\.yaml records other settings.*tasks ave,llp -> ave"):
        T.train(train_config(["tasks=ave"], resume_from=run), run, resume=True, quiet=True)
    capsys.readouterr()
    T.train(train_config([], resume_from=run), run, resume=True, quiet=True)
    assert "no checkpoint yet: starting from step 0" in " ".join(capsys.readouterr().err.split())

    _assert_same_weights(whole, run, step=5)
    assert read_log(load_run(run))[0] == read_log(load_run(whole))[0]   # every loss and metric too
    assert json.loads((run / "run.json").read_text())["tasks"] == ["ave", "llp"]


def test_nothing_to_resume_and_a_last_pt_not_from_avu_train(stores, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        T.train(config(stores, "tasks=ave"), tmp_path / "none", resume=True, quiet=True)
    run = T.train(config(stores, "tasks=ave", "max_steps=2", "eval_every=2"), tmp_path / "ave", quiet=True)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes((run / "checkpoints" / "best.pt").read_bytes())    # the model alone
    with pytest.raises(ckpt.CheckpointError, match=r"last\.pt: not a last\.pt written by avu train "
                                                   r"\(it lacks optimizer, scheduler, sampler, rng\)"):
        T.train(train_config([], resume_from=run), run, resume=True, quiet=True)


def test_run_directory(stores, tmp_path):
    run = T.train(config(stores, "tasks=all", "max_steps=4", "eval_every=2"), tmp_path / "joint", quiet=True)
    info = load_run(run)
    assert info.tasks == ("ave", "llp", "vggss", "avs-s4", "avs-ms3", "avss", "music-avqa", "unav100", "activitynet",
                          "desed")
    assert info.joint and info.random_weights and all(info.store_path(t) for t in info.tasks)
    records, bad = read_log(info)
    assert bad == 0 and {r["kind"] for r in records} == {"train", "val"}
    val = {r["task"] for r in records if r["kind"] == "val"}
    assert val == set(info.tasks) - {"vggss", "desed"}        # no val split in VGG-SS and DESED
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"last.pt", "best.pt", "best-ave.pt", "best-music-avqa.pt"} <= names
    best = ckpt.load(run / "checkpoints" / "best.pt")
    assert "optimizer" not in best and best["best"]["overall"]["step"] in (2, 4)
    with pytest.raises(FileExistsError, match="--resume"):
        T.train(config(stores, "tasks=all", "max_steps=4"), run, quiet=True)
    single = T.train(config(stores, "tasks=avs-ms3", "max_steps=2"), tmp_path / "ms3", quiet=True)
    assert not load_run(single).joint and json.loads((single / "run.json").read_text())["tasks"] == ["avs-ms3"]


def test_ddp_two_processes_match_one(stores, tmp_path):
    """torchrun, 2 CPU processes (gloo), each half of the global batch: the same weights as one
    process on the whole batch (dropout off; these losses are means over the batch)."""
    args = [*TINY, f"stores={stores}", "tasks=ave,llp", "max_steps=3", "eval_every=3", "dropout=0"]
    one = T.train(train_config(args), tmp_path / "one", quiet=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
           "-m", "cli", "train", "--out", str(tmp_path / "two"), "--quiet", *args]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(one), _weights(tmp_path / "two")
    assert a["sampler"] == b["sampler"]
    # Weights the loss is (nearly) invariant to (attention key biases, biases under a softmax,
    # the prompt gate's key bias with one prompt per task) get gradients of rounding noise, which
    # Adam scales up to steps of about lr: they may differ by up to steps x lr. Nearly all
    # weights agree to 1e-5 (a wrong batch split or no gradient averaging moves them all).
    diff = torch.cat([(a["model"][k].float() - b["model"][k].float()).abs().flatten() for k in a["model"]])
    assert diff.max() <= 3 * 2 * 1e-3
    assert (diff <= 1e-5).float().mean() > 0.99


def test_grouped_permutation_draws_runs_of_one_video_and_every_sample_once():
    from trainer.data import grouped_permutation

    groups = np.repeat(np.arange(6), 8)                   # 6 videos of 8 questions: runs of 4 are full
    perm = grouped_permutation(np.random.default_rng(0), groups, 4)
    assert sorted(perm.tolist()) == list(range(48))
    blocks = groups[perm].reshape(-1, 4)
    assert (blocks == blocks[:, :1]).all()                 # each run of 4 is one video's
    assert sorted(np.bincount(blocks[:, 0]).tolist()) == [2] * 6   # each video in 2 runs
    assert len(set(map(tuple, perm.reshape(-1, 4)))) == 12
    uneven = np.repeat(np.arange(9), [1, 5, 9, 2, 4, 4, 7, 3, 12])
    perms = [grouped_permutation(np.random.default_rng(s), uneven, 4) for s in range(3)]
    for p in perms:
        assert sorted(p.tolist()) == list(range(len(uneven)))
    assert not np.array_equal(perms[0], perms[1])          # varies with the seed ...
    assert np.array_equal(perms[0], grouped_permutation(np.random.default_rng(0), uneven, 4))   # ... and only with it


def test_sampler_draws_questions_in_runs_of_one_video():
    groups = np.repeat(np.arange(10), 8)                         # 10 videos, 8 questions each
    sampler = TaskSampler({"music-avqa": 80}, 16, {"music-avqa": 1}, seed=0,
                          groups={"music-avqa": groups}, run=4)
    specs = [s for s, _ in zip(sampler, range(10))]
    epoch = np.concatenate([s["indices"] for s in specs[:5]])
    assert sorted(epoch.tolist()) == list(range(80))            # an epoch is every question once
    for s in specs:
        assert len(np.unique(groups[s["indices"]])) <= 4          # 16 questions from at most 4 videos
    plain = TaskSampler({"music-avqa": 80}, 16, {"music-avqa": 1}, seed=0)
    assert np.mean([len(np.unique(groups[s["indices"]])) for s, _ in zip(plain, range(10))]) > 6
    resumed = TaskSampler({"music-avqa": 80}, 16, {"music-avqa": 1}, seed=0, state=specs[6]["state"],
                          groups={"music-avqa": groups}, run=4)
    assert np.array_equal(next(iter(resumed))["indices"], specs[7]["indices"])
    shards = [next(iter(TaskSampler({"music-avqa": 80}, 16, {"music-avqa": 1}, seed=0, rank=r, world=2,
                                     groups={"music-avqa": groups}, run=4)))["indices"] for r in (0, 1)]
    assert np.array_equal(np.concatenate(shards), specs[0]["indices"])   # the global batch, split in two
    for shard in shards:                                        # halves of whole runs: <= 2 videos each
        assert len(shard) == 8 and len(np.unique(groups[shard])) <= 2
