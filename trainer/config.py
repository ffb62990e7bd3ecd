"""Stage two's settings: `TrainConfig`, the `train` section of stages.yaml (read by cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Stage two: the multi-task trainer on the feature stores (trainer/train.py). Defaults are
    the paper's (IV-B): Adam 1e-4, x0.1 every 10 epochs, batch 64, 200 epochs, uniform tasks."""

    tasks: str = "all"               # all | comma list: ave,llp,vggss,avs-s4,avs-ms3,avss,music-avqa
    stores: str = "features/{task}.zarr"   # each task's feature store; {task} = the dataset name
    task_weights: dict = field(default_factory=dict)   # draw weight of a task per step; a task left out weighs 1
    seed: int = 0
    epochs: int = 200                # an epoch = as many steps as all tasks' training batches together
    max_steps: int = 0               # > 0: stop after this many steps (the schedule still follows epochs)
    batch_size: int = 64             # global: split over the processes of a distributed run
    questions_per_video: int = 1     # MUSIC-AVQA: draw questions in runs of up to N of one video (1 = any mix)
    ave_supervision: str = "full"    # full (segment labels) | weak (video label only, MIL): AVE's Table II columns
    lr: float = 1.0e-4
    lr_decay: float = 0.1            # lr x lr_decay every lr_decay_epochs
    lr_decay_epochs: int = 10
    lr_decay_at: float = 0.0         # > 0: decay once instead, after this fraction of the run's steps (whole epochs)
    weight_decay: float = 0.0
    grad_clip: float = 1.0           # max global gradient norm (0 = off)
    precision: str = "auto"          # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    attention: str = "fused"         # fused (SDPA) | naive (the bmm reference)
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    workers: int = 2                 # loader processes (0 = read in the training process)
    prefetch: int = 4                # batches each loader process reads ahead
    eval_every: int = 0              # validate every N steps (0 = every epoch)
    eval_batch_size: int = 32
    val_split: str = "val"           # tasks whose store has no such split are not validated
    log_every: int = 20              # steps between loss records in metrics.jsonl
    best_per_task: bool = True       # also keep the best checkpoint of every task
    standardise: bool = True         # features to zero mean, unit std per channel (training statistics)
    d_model: int = 512               # model (trainer/model.py ModelConfig); HAN widths
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    dec_layers: int = 1
    mask_channels: int = 64
