"""`avu train`: AV-Unified trained jointly on the cached features; the loop is `train` below.

    cfg = TrainConfig(tasks="ave,llp", max_steps=500)               # or cli.train_config(...)
    train(cfg, Path("runs/joint"))                                  # one process
    torchrun --nproc-per-node 2 -m cli train --out runs/joint tasks=all   # DistributedDataParallel

The run directory (trainer/rundir.py): config.yaml, run.json, metrics.jsonl, checkpoints/
{last,best,best-<task>}.pt. `--resume` continues from checkpoints/last.pt as if never stopped
(or, where the run stopped before writing one, starts it again from step 0).

Decisions (where the paper is silent):
- Paper IV-B defaults: Adam 1e-4, lr x0.1 every 10 epochs, batch 64, 200 epochs; an epoch is
  as many steps as all tasks' training batches together (trainer/data.py), the lr decays on
  that step count (StepLR stepped every step), `max_steps` only cuts the run short.
- Open-set (`holdout_classes`): the held-out classes are taken out of the training batches'
  targets (trainer/tasks/holdout.py); validation and evaluation score every class.
- Eq. 10: each step one task, drawn with `task_weights` (a task left out of them weighs 1);
  the loss is that task's loss alone. A single task is the paper's "w/o jt" run (joint=False).
- Gradient clipping at global norm `grad_clip` (1.0; HAN and the paper give none). bf16
  autocast on CUDA (fp32 master weights, no scaler needed), fp32 on CPU; the fused (SDPA)
  attention unless attention=naive.
- Validation on each task's `val_split` every `eval_every` steps (default: every epoch) and at
  the end, on rank 0; tasks without that split (VGG-SS) are not validated. Checkpoints are
  written at each validation: last.pt (everything needed to resume), best.pt (best mean of the
  tasks' selection metrics, each Benchmark's `select`), best-<task>.pt (that task's best); the best ones
  hold the model only. Ctrl-C (SIGINT) or SIGTERM finishes the step, writes last.pt and
  returns; a second Ctrl-C stops at once. Both may come to the whole process group (a
  terminal, a cluster scheduler on preemption or at a time limit): the loader processes
  ignore them (trainer/data.py worker_ignores_stop_signals), so the step's batch and the next
  one still arrive.
- Resume: model, optimiser, scheduler, sampler state (that of the last batch trained on) and
  every RNG state come back, so on CPU the weights equal an uninterrupted run's exactly; lines
  of metrics.jsonl past the checkpoint's step are dropped. The loader has its own generator,
  so restarting it draws nothing from the RNG that dropout uses. The settings that decide the
  numbers (SAME_ON_RESUME, the tasks, the model's shape) must be those recorded.
- Resume of a run stopped before its first checkpoint (config.yaml, no last.pt): it starts
  again from step 0 in its folder with the settings config.yaml records (checked as above),
  and metrics.jsonl starts empty; the result is that of a fresh run. A plain start into such
  a folder is refused and points at --resume.
- Distributed: every process draws the same task and takes its share of the same global batch
  (batch_size is global); DDP with find_unused_parameters (each step uses one head, LLP skips
  SPM). Only rank 0 validates and writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist

from trainer import checkpoint as ckpt
from trainer.attention import set_attention_impl
from trainer.config import TrainConfig
from trainer.data import BatchDataset, TaskSampler, feature_stats, make_loader, open_tasks, resolve_tasks, to_device
from trainer.evaluate import predict, score
from trainer.model import ModelConfig
from trainer.rundir import recorded_settings, write_settings
from trainer.runtime import autocast, build_model, resolve_device, task_tensors
from trainer.tasks import BENCHMARKS, HEADS
from trainer.tasks.holdout import hide_classes, holdout_mask, supports, unknown_names
from trainer.tasks.spec import FULL

RUN_FILES = ("config.yaml", "run.json", "metrics.jsonl")


def train(cfg: TrainConfig, out: Path, resume: bool = False, name: str | None = None,
          quiet: bool = False) -> Path:
    """Train on the stores of `cfg.tasks` into the run directory `out`; returns `out`."""
    out = Path(out)
    rank, world, device = setup_distributed(cfg.device)
    master = rank == 0
    tasks = resolve_tasks(cfg.tasks)
    last = out / "checkpoints" / "last.pt"
    from_checkpoint = resume and last.is_file()
    recorded = None
    if resume and not from_checkpoint:   # stopped before its first checkpoint: start again, same settings
        recorded = recorded_settings(out)
        check_same_run(recorded, recorded["tasks"], cfg, tasks, str(out / "config.yaml"))
    stores = open_tasks(tasks, cfg.stores)
    tensors = {t: task_tensors(s, device) for t, s in stores.items()}
    loss_of = {t: BENCHMARKS[t].loss(supervision(cfg, t)) for t in tasks}
    hidden = held_out(cfg, stores)
    set_attention_impl(cfg.attention)

    # model, optimiser, schedule, sampler
    torch.manual_seed(cfg.seed)
    mcfg = model_config(cfg, stores)
    model = build_model(mcfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = {t: float(cfg.task_weights.get(t, 1.0)) for t in tasks}
    groups = {t: s.clip_index(s.samples["train"]) for t, s in stores.items() if s.questions and s.n("train")}
    sampler = TaskSampler({t: s.n("train") for t, s in stores.items()}, cfg.batch_size, weights, cfg.seed,
                          rank, world, groups=groups, run=cfg.questions_per_video)
    steps_per_epoch = sampler.steps_per_epoch()
    max_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    decay_epochs = max(1, round(cfg.lr_decay_at * max_steps / steps_per_epoch)) if cfg.lr_decay_at > 0 \
        else cfg.lr_decay_epochs
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, decay_epochs * steps_per_epoch, cfg.lr_decay)
    eval_every = cfg.eval_every or steps_per_epoch
    best: dict[str, dict] = {}
    norm = feature_stats(stores) if cfg.standardise and not from_checkpoint else None
    if from_checkpoint:
        state = ckpt.load(last, map_location=device)
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if missing:
            raise ckpt.CheckpointError(f"{last}: not a last.pt written by avu train (it lacks {', '.join(missing)})")
        check_same_run(state["config"], state["tasks"], cfg, tasks, str(last), state["model_config"], mcfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.state, best, norm = state["sampler"], state["best"], state["feature_norm"]
        ckpt.set_rng_state(state["rng"])
        if master:
            trim_log(out / "metrics.jsonl", state["step"])
    elif recorded is not None:
        if master:
            restart_run(out, stores, recorded, cfg)
    elif master:
        start_run(out, cfg, tasks, stores, name or out.name)
    step = sampler.state["step"]
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    data = BatchDataset(stores, {h: model.heads[h].uses_patches for h in HEADS})
    loader = make_loader(data, sampler, cfg.workers, cfg.prefetch, pin=device.type == "cuda", persistent=True)
    log = (out / "metrics.jsonl").open("a") if master else None
    show = Display(tasks, max_steps, quiet or not master, master)
    if recorded is not None:
        show.note(f"{out}: no checkpoint yet: starting from step 0", always=True)
    idle = [t for t in tasks if t not in sampler.tasks]
    if idle:
        show.note(f"not trained (no training split, or weight 0), evaluated only: {', '.join(idle)}")
    stop = StopFlag()
    window: dict[str, list[torch.Tensor]] = {t: [] for t in tasks}
    samples, t0, saved_at, sampler_state = 0, time.perf_counter(), step, sampler.state

    model.train()
    with stop, show:
        for batch in loader:
            if step >= max_steps or stop.agreed(world, device):
                break
            task, sampler_state = batch["task"], batch.pop("state")   # the model reads "task" (its scales)
            batch = to_device(batch, device, norm)
            if task in hidden:                 # open-set: held-out classes are no training target
                batch = hide_classes(batch, hidden[task])
            spec = stores[task].spec
            with autocast(device, cfg.precision):
                outputs = ddp(batch, spec.head, *tensors[task], **spec.head_options)
                loss = loss_of[task](outputs, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            window[task].append(loss.detach())
            samples += len(batch["clip_index"]) * world

            if step % cfg.log_every == 0 or step == max_steps:
                losses = {t: torch.stack(v).float().mean().item() for t, v in window.items() if v}
                rate = samples / (time.perf_counter() - t0)
                for t, value in losses.items():
                    write_record(log, {"kind": "train", "step": step, "epoch": step / steps_per_epoch,
                                       "task": t, "loss": value})
                show.train(step, step / steps_per_epoch, scheduler.get_last_lr()[0], losses, rate)
                window, samples, t0 = {t: [] for t in tasks}, 0, time.perf_counter()

            if step % eval_every == 0 or step == max_steps:
                if master:
                    scores = validate(model, stores, cfg, device, norm)
                    for t, m in scores.items():
                        write_record(log, {"kind": "val", "step": step, "epoch": step / steps_per_epoch,
                                           "task": t, "metrics": m})
                    improved = update_best(best, scores, step)
                    save_checkpoints(out, model, optimizer, scheduler, sampler_state, step, best, improved,
                                     cfg, mcfg, tasks, norm)
                    show.val(scores)
                saved_at = step
                barrier(world)
        if master and saved_at != step:   # stopped between validations
            save_checkpoints(out, model, optimizer, scheduler, sampler_state, step, best, set(), cfg, mcfg, tasks,
                             norm)
    if log:
        log.close()
    if stop.set:
        show.note(f"stopped at step {step}: resume with --resume", always=True)
    if world > 1:
        dist.destroy_process_group()
    return out


# ----------------------------------------------------------------------------- set-up
def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def model_config(cfg: TrainConfig, stores: dict) -> ModelConfig:
    """The model's shape: widths from the settings, CLIP width and patch grid from the stores,
    and T (which sets the TPM scales, trainer/model.py default_scales) the longest clip of the
    stores trained on, so the widest window still covers a whole clip; task_T: each store's
    own T, so a benchmark's batches run the scales of its own clips."""
    s = next(iter(stores.values()))
    return ModelConfig(d_model=cfg.d_model, n_heads=cfg.n_heads, d_ff=cfg.d_ff, dropout=cfg.dropout,
                       dec_layers=cfg.dec_layers, mask_channels=cfg.mask_channels, visual_dim=s.visual_dim,
                       n_patches=s.n_patches, T=max(st.T for st in stores.values()),
                       task_T={t: st.T for t, st in stores.items()}, task_experts=cfg.task_experts)


def start_run(out: Path, cfg: TrainConfig, tasks: list[str], stores: dict, name: str) -> None:
    """config.yaml, run.json and an empty metrics.jsonl; refuses a folder that holds a run."""
    if any((out / f).exists() for f in RUN_FILES):
        if (out / "config.yaml").is_file() and not (out / "checkpoints" / "last.pt").is_file():
            raise FileExistsError(f"{out} holds a run that stopped before its first checkpoint: --resume starts "
                                  f"it again from step 0 with its recorded settings, or choose another --out")
        raise FileExistsError(f"{out} already holds a run: --resume it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"name": name, **dataclasses.asdict(cfg), "tasks": tasks}
    write_settings(out, resolved)
    write_run_json(out, name, tasks, stores, cfg)
    (out / "metrics.jsonl").write_text("")


def held_out(cfg: TrainConfig, stores: dict) -> dict:
    """{task: (K,) bool} of the classes `holdout_classes` takes out of each task's training
    targets (trainer/tasks/holdout.py); a class name no benchmark of the run has is refused."""
    unknown = unknown_names(cfg.holdout_classes, {t: s.classes for t, s in stores.items()})
    if unknown:
        raise ValueError(f"holdout_classes: {', '.join(map(repr, unknown))} is no class of "
                         f"{', '.join(stores)}")
    masks = {t: holdout_mask(cfg.holdout_classes, s.classes, t, cfg.seed) for t, s in stores.items()
             if supports(s.spec.targets)}
    return {t: m for t, m in masks.items() if m is not None}


def supervision(cfg: TrainConfig, task: str) -> str:
    """How the task is trained (Benchmark.supervision_of; FULL where it has one way only)."""
    return BENCHMARKS[task].supervision_of(cfg.ave_supervision) or FULL


def write_run_json(out: Path, name: str, tasks: list[str], stores: dict, cfg: TrainConfig) -> None:
    (out / "run.json").write_text(json.dumps({
        "name": name, "tasks": tasks, "random_weights": any(s.random_weights for s in stores.values()),
        "joint": len(tasks) > 1, "ave_supervision": cfg.ave_supervision,
        "stores": {t: str(s.path.resolve()) for t, s in stores.items()}}, indent=1))


def restart_run(out: Path, stores: dict, recorded: dict, cfg: TrainConfig) -> None:
    """A run that stopped before its first checkpoint starts again from step 0 in its folder:
    config.yaml stays, run.json is written again (start_run may have been cut short before
    it), metrics.jsonl is emptied (its records are redone)."""
    write_run_json(out, recorded.get("name") or out.name, recorded["tasks"], stores, cfg)
    (out / "metrics.jsonl").write_text("")


# settings a resumed run must keep: they decide its numbers (the rest, e.g. max_steps, workers,
# eval_every, device, stores, may change); tasks and the model's shape are checked beside them
SAME_ON_RESUME = ("seed", "batch_size", "lr", "lr_decay", "lr_decay_epochs", "lr_decay_at", "task_weights",
                  "holdout_classes",
                  "weight_decay", "grad_clip", "questions_per_video", "ave_supervision", "standardise", "d_model", "n_heads", "d_ff", "dropout",
                  "dec_layers", "mask_channels", "task_experts")
CHECKPOINT_KEYS = ("step", "config", "model_config", "tasks", "feature_norm", "model", "best", "optimizer",
                   "scheduler", "sampler", "rng")


def check_same_run(recorded: dict, recorded_tasks: list[str], cfg: TrainConfig, tasks: list[str], where: str,
                   recorded_model: dict | None = None, mcfg: ModelConfig | None = None) -> None:
    """Refuse to resume with settings other than those recorded in `where` (a checkpoint's
    config or config.yaml); a setting the record lacks (older than it) is not compared."""
    differs = [f"{k} {recorded[k]!r} -> {getattr(cfg, k)!r}" for k in SAME_ON_RESUME
               if k in recorded and recorded[k] != getattr(cfg, k)]
    if list(recorded_tasks) != tasks:
        differs.append(f"tasks {','.join(recorded_tasks)} -> {','.join(tasks)}")
    if recorded_model is not None and mcfg is not None:
        now = dataclasses.asdict(mcfg)
        differs += [f"{k} {v!r} -> {now.get(k)!r} (model)" for k, v in recorded_model.items()
                    if now.get(k) != v and k not in SAME_ON_RESUME]
    if differs:
        raise ValueError(f"cannot resume: {where} records other settings than this command gives "
                         f"({'; '.join(differs)}); resume with the recorded ones, or train into another --out")


def trim_log(path: Path, step: int) -> None:
    """Drop the records after `step` (written after the checkpoint, redone on resume)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            pass
    path.write_text("".join(line + "\n" for line in keep))


def write_record(log, record: dict) -> None:
    if log is not None:
        log.write(json.dumps(record) + "\n")
        log.flush()


# ----------------------------------------------------------------------------- validation, checkpoints
def validate(model, stores: dict, cfg: TrainConfig, device: torch.device, norm: dict | None
             ) -> dict[str, dict[str, float]]:
    """Official metrics of every task that has a validation split."""
    out = {}
    for t, s in stores.items():
        if s.n(cfg.val_split):
            preds = predict(model, s, cfg.val_split, device, cfg.eval_batch_size, cfg.workers, cfg.precision, norm)
            out[t] = score(t, preds, s.path, chance=False)["metrics"]
    return out


def update_best(best: dict, scores: dict, step: int) -> set[str]:
    """Record improvements; returns the names improved ("overall" and/or tasks)."""
    improved = set()
    for t, m in scores.items():
        key = BENCHMARKS[t].select
        if m[key] > best.get(t, {}).get("score", -math.inf):
            best[t] = {"score": m[key], "step": step}
            improved.add(t)
    if scores:
        mean = sum(m[BENCHMARKS[t].select] for t, m in scores.items()) / len(scores)
        if mean > best.get("overall", {}).get("score", -math.inf):
            best["overall"] = {"score": mean, "step": step}
            improved.add("overall")
    return improved


def save_checkpoints(out: Path, model, optimizer, scheduler, sampler_state: dict, step: int, best: dict,
                     improved: set[str], cfg: TrainConfig, mcfg: ModelConfig, tasks: list[str],
                     norm: dict | None) -> None:
    meta = {"step": step, "config": dataclasses.asdict(cfg), "model_config": dataclasses.asdict(mcfg),
            "tasks": tasks, "feature_norm": norm, "version": ckpt.VERSION}
    weights = {**meta, "model": model.state_dict(), "best": best}
    folder = out / "checkpoints"
    for name in improved:
        if name == "overall":
            ckpt.save(weights, folder / "best.pt")
        elif cfg.best_per_task and len(tasks) > 1:
            ckpt.save(weights, folder / f"best-{name}.pt")
    ckpt.save({**weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "sampler": sampler_state, "rng": ckpt.rng_state(), "best": best}, folder / "last.pt")


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes its step and checkpoints. A second Ctrl-C
    raises KeyboardInterrupt. Processes of a distributed run agree (any stops all)."""

    def __init__(self):
        self.set = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        self.set = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> "StopFlag":
        try:
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no handlers
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def agreed(self, world: int, device: torch.device) -> bool:
        if world == 1:
            return self.set
        flag = torch.tensor([float(self.set)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.set = bool(flag.item())
        return self.set


# ----------------------------------------------------------------------------- progress display
class Display:
    """A rich live table: step, epoch, lr, samples/s, loss per task, the last validation."""

    def __init__(self, tasks: list[str], max_steps: int, quiet: bool, master: bool = True):
        self.tasks, self.max_steps, self.quiet, self.master = tasks, max_steps, quiet, master
        self.losses: dict[str, float] = {}
        self.scores: dict[str, dict] = {}
        self.head = "starting"
        self.live = None
        self.t0 = time.perf_counter()

    def __enter__(self) -> "Display":
        if not self.quiet:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self.render(), console=Console(stderr=True), refresh_per_second=2)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)

    def train(self, step: int, epoch: float, lr: float, losses: dict, rate: float) -> None:
        self.losses.update(losses)
        elapsed = time.perf_counter() - self.t0
        self.head = (f"step {step}/{self.max_steps}  epoch {epoch:.2f}  lr {lr:.2e}  {rate:.1f} samples/s  "
                     f"{elapsed / 60:.1f} min")
        self.refresh()

    def val(self, scores: dict) -> None:
        self.scores.update(scores)
        self.refresh()

    def note(self, text: str, always: bool = False) -> None:
        """A line on stderr; `always`: even with --quiet (on rank 0 only)."""
        if self.master and (always or not self.quiet):
            from rich.console import Console

            Console(stderr=True).print(text)

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def render(self):
        from rich.table import Table

        table = Table(title=self.head, title_justify="left")
        for col in ("task", "loss", "val (selection metric)"):
            table.add_column(col, justify="left" if col == "task" else "right")
        for t in self.tasks:
            loss = self.losses.get(t)
            key = BENCHMARKS[t].select
            val = self.scores.get(t, {}).get(key)
            table.add_row(t, "—" if loss is None else f"{loss:.4f}", "—" if val is None else f"{key} {100 * val:.2f}")
        return table
