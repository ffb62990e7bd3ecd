"""Stage settings: one dataclass per stage, filled from `stages.yaml` plus `key=value` overrides.

Stage one's dataclasses are here, stage two's (TrainConfig) in trainer/config.py; this module
also reads them (`load_stage`). Config stops at the CLI: only `cli.py` reads settings files;
code below it takes these dataclasses, never the YAML dict. Unknown keys fail loudly, naming
the file, the section and the valid keys.
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


STAGES: dict[str, type] = {"extract": ExtractConfig, "datasets": DatasetsConfig}   # stage one's
SECTIONS = ("extract", "datasets", "train")   # stages.yaml's sections; train: trainer/config.py TrainConfig


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


def load_stage(stage: str, path: Path | None = None, overrides: dict | None = None, cls: type | None = None) -> object:
    """The dataclass of `stage` (`cls`, default STAGES[stage]) from the YAML file at `path`
    (default: the shipped stages.yaml) plus overrides."""
    path = Path(path or DEFAULT_STAGES)
    if stage not in SECTIONS or (cls is None and stage not in STAGES):
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(SECTIONS)}")
    cls = cls or STAGES[stage]
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: settings file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections")
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    section = doc.get(stage) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path} [{stage}]: expected a mapping")
    values = {**section, **(overrides or {})}
    return build(cls, values, f"{path.name} [{stage}]")


def resolve_path(value: str, base: Path = DEFAULT_STAGES.parent) -> Path:
    """A path from the settings: `~` expanded, relative paths taken from the repository root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def as_dict(cfg: object) -> dict:
    return dataclasses.asdict(cfg)
