"""Stage two's settings: `TrainConfig`, the `train` section of stages.yaml (read by cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """avu train: the multi-task trainer on the cached features (trainer/train.py). Paper
    defaults (AV-Unified IV-B): Adam 1e-4, x0.1 every 10 epochs, batch 64, 200 epochs; uniform
    task draws."""

    tasks: str = "all"               # all | a comma list of benchmarks (avu train --help lists them)
    stores: str = "features/{task}.zarr"   # each task's store (avu extract --dataset); relative to the
                                     # working directory
    task_weights: dict = field(default_factory=dict)   # per-step draw weights, e.g. {avss: 3}; a task left
                                     # out weighs 1
    seed: int = 0
    epochs: int = 200                # one epoch = as many steps as all tasks' training batches together
    max_steps: int = 0               # > 0: stop after this many steps (the lr schedule still follows epochs)
    batch_size: int = 64             # global batch; a distributed run splits it over its processes
    questions_per_video: int = 1     # MUSIC-AVQA: a batch takes questions in runs of up to N of one video;
                                     # the model then runs TPM + SPM once per video (1 = any mix, as the paper)
    ave_supervision: str = "full"    # AVE: full (segment labels) | weak (the video label only, multiple-
                                     # instance learning): Table II's two columns
    holdout_classes: list | float = 0.0   # open-set: classes left out of the training targets of the dense
                                     # benchmarks, AVE and LLP (scored zero-shot): a fraction of each one's
                                     # classes (seeded), or a list of class names; 0 = none
    lr: float = 1.0e-4
    lr_decay: float = 0.1            # lr x 0.1 ...
    lr_decay_epochs: int = 10        # ... every 10 epochs
    lr_decay_at: float = 0.0         # > 0: instead, one decay after this fraction of the run's steps
                                     # (rounded to whole epochs; the demo's 0.75)
    weight_decay: float = 0.0
    grad_clip: float = 1.0           # max global gradient norm, 0 = off (the paper does not say)
    precision: str = "auto"          # auto = bf16 autocast on CUDA, fp32 on CPU | bf16 | fp32
    attention: str = "fused"         # fused (SDPA) | naive (bmm reference)
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    workers: int = 2                 # loader processes per training process (0 = read in-process)
    prefetch: int = 4                # batches each loader process reads ahead
    eval_every: int = 0              # validate every N steps; 0 = once per epoch
    eval_batch_size: int = 32
    val_split: str = "val"           # a task whose store has no such split (VGG-SS) is not validated
    log_every: int = 20              # steps between loss records in metrics.jsonl
    best_per_task: bool = True       # keep checkpoints/best-<task>.pt beside best.pt (overall) and last.pt
    standardise: bool = True         # audio/visual/patches per channel to zero mean, unit std (training
                                     # clips' statistics)
    d_model: int = 512               # model width (HAN's); the rest of the model follows trainer/model.py
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    dec_layers: int = 1
    mask_channels: int = 64
    task_experts: bool = False       # UniAV's task experts: a per-benchmark FFN in every TPM layer (trainer/model.py)
