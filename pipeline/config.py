"""Stage settings: one dataclass per stage, filled from `stages.yaml` plus `key=value` overrides.

Config stops at the CLI: code below `cli.py` takes these dataclasses, never the YAML dict.
Unknown keys fail loudly, naming the file, the section and the valid keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_STAGES = Path(__file__).resolve().parent.parent / "stages.yaml"


class ConfigError(ValueError):
    """A setting is unknown, malformed or of the wrong type."""


@dataclass
class ExtractConfig:
    """Stage one: decoding, encoders, store and parallelism."""

    T: int = 10                      # segments (seconds) per clip; shorter clips are padded; 0: any length
    max_seconds: int = 600           # T = 0: seconds kept at most (longer videos are cut there, and reported)
    sample_rate: int = 16000         # audio rate fed to VGGish
    decoder: str = "auto"            # auto (decord, then ffmpeg) | decord | ffmpeg
    clip_model: str = "ViT-L-14-quickgelu"   # any open_clip model name
    clip_weights: str = "weights/ViT-L-14-openai.pt"
    clip_pretrained_tag: str = "openai"      # open_clip tag used only with `download`
    patch_grid: int = 8              # pool patch tokens to g x g; 0 keeps the model's own grid
    vggish_weights: str = "weights/vggish-10086976.pth"
    random_weights: bool = False     # explicit opt-in; recorded in the store and in every output
    download: bool = False           # allow fetching weights from the official URLs
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    precision: str = "fp32"          # fp32 | bf16 | fp16: the frame and audio encoders' arithmetic
    clip_batch: int = 80             # frames per encoder batch (CLIP; VGGish gets the same clips)
    clips_per_task: int = 8          # clips decoded and encoded together by one worker task
    decode_threads: int = 1          # decoder threads inside a worker (overlap with encoding)
    workers: int = 2                 # local Dask workers; 0 runs in this process without Dask
    scheduler: typing.Optional[str] = None   # address of an existing Dask scheduler
    threads_per_worker: int = 0      # torch threads per worker; 0 = cores / workers
    compression_level: int = 3       # zstd level of the feature arrays
    keep_freed_memory: bool = True   # glibc keeps freed encoder activations for the next batch
    pin_workers: bool = True         # local cluster on CPUs: each worker bound to its own cores
    retry_failed: bool = False       # re-run clips that failed before
    repair: bool = False             # verify every chunk of the done clips; extract the damaged ones again


@dataclass
class DatasetsConfig:
    """Stage one with --dataset: where each benchmark's files lie under --root (the official
    layouts by default), and how targets are made. Video paths are templates ({id}, {file})."""

    avs_mask_size: int = 224         # AVSBench masks are resized (nearest) to this square
    ave_annotations: str = "."       # Annotations.txt, {train,val,test}_order.h5 or DERIVED_ave_splits.csv
    ave_videos: str = "AVE/{id}.mp4"
    llp_annotations: str = "."       # AVVP_train.csv, AVVP_{val,test}_pd.csv, AVVP_eval_{audio,visual}.csv
    llp_videos: str = "LLP/{id}.mp4"
    vggss_annotations: str = "."     # vggss.json, vggss_test.csv
    vggss_train_list: str = "vggsound_train.txt"   # optional, in vggss_annotations: unannotated clips
    vggss_videos: str = "VGGSS/{file}.mp4"
    avs_s4_folder: str = "Single-source"   # s4_meta_data.csv and s4_data/
    avs_ms3_folder: str = "Multi-sources"  # ms3_meta_data.csv and ms3_data/
    avss_folder: str = "."           # metadata.csv, label2idx.json, v1s/ v1m/ v2/
    music_avqa_annotations: str = "json_update"    # avqa-{train,val,test}.json
    music_avqa_videos: str = "MUSIC-AVQA/{id}.mp4"


def _uniform() -> dict[str, float]:
    return {t: 1.0 for t in ("ave", "llp", "vggss", "avs-s4", "avs-ms3", "avss", "music-avqa")}


@dataclass
class TrainConfig:
    """Stage two: the multi-task trainer on the feature stores (trainer/train.py). Defaults are
    the paper's (IV-B): Adam 1e-4, x0.1 every 10 epochs, batch 64, 200 epochs, uniform tasks."""

    tasks: str = "all"               # all | comma list: ave,llp,vggss,avs-s4,avs-ms3,avss,music-avqa
    stores: str = "features/{task}.zarr"   # each task's feature store; {task} = the dataset name
    task_weights: dict = field(default_factory=_uniform)   # draw probability of each task per step
    seed: int = 0
    epochs: int = 200                # an epoch = as many steps as all tasks' training batches together
    max_steps: int = 0               # > 0: stop after this many steps (the schedule still follows epochs)
    batch_size: int = 64             # global: split over the processes of a distributed run
    questions_per_video: int = 1     # MUSIC-AVQA: draw questions in runs of up to N of one video (1 = any mix)
    lr: float = 1.0e-4
    lr_decay: float = 0.1            # lr x lr_decay every lr_decay_epochs
    lr_decay_epochs: int = 10
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


STAGES: dict[str, type] = {"extract": ExtractConfig, "datasets": DatasetsConfig, "train": TrainConfig}


def _coerce(value: object, hint: object, where: str) -> object:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != number:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def build(cls: type, values: dict, where: str) -> object:
    """Make `cls` from a dict, refusing unknown keys and coercing types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def parse_overrides(items: typing.Iterable[str]) -> dict:
    """`key=value` strings to a dict; values are read as YAML scalars."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def load_stage(stage: str, path: Path | None = None, overrides: dict | None = None) -> object:
    """The dataclass of `stage` from the YAML file at `path` (default: the shipped stages.yaml)."""
    path = Path(path or DEFAULT_STAGES)
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: settings file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections")
    unknown = sorted(set(doc) - set(STAGES))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; sections: {', '.join(STAGES)}")
    section = doc.get(stage) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path} [{stage}]: expected a mapping")
    values = {**section, **(overrides or {})}
    return build(STAGES[stage], values, f"{path.name} [{stage}]")


def resolve_path(value: str, base: Path = DEFAULT_STAGES.parent) -> Path:
    """A path from the settings: `~` expanded, relative paths taken from the repository root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def as_dict(cfg: object) -> dict:
    return dataclasses.asdict(cfg)
