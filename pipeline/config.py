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
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_STAGES = Path(__file__).resolve().parent.parent / "stages.yaml"


class ConfigError(ValueError):
    """A setting is unknown, malformed or of the wrong type."""


@dataclass
class ExtractConfig:
    """avu extract: decoding, encoders, the store and parallelism (pipeline/extract.py)."""

    T: int = 10                      # seconds per clip (AVE/LLP/VGG-SS/AVSS 10, S4/MS3 5, MUSIC-AVQA 60: a
                                     # --dataset sets its own); shorter clips are padded; T=0 (--videos):
                                     # every whole second of each video, unpadded (each clip its own length)
    max_seconds: int = 600           # T=0 only: a longer video is cut here, and counted and named in the
                                     # summary and the store
    hop: dict = dataclasses.field(default_factory=dict)   # seconds per feature step by benchmark, e.g.
                                     # {unav100: 0.5, videos: 0.25}; a benchmark left out takes its own (1;
                                     # the dense ones 0.25), `videos` is --videos (1). T and max_seconds stay
                                     # seconds; the store counts steps and records the hop
    patches: dict = dataclasses.field(default_factory=dict)   # whether a store holds CLIP patch tokens,
                                     # by benchmark, e.g. {llp: false}; a benchmark left out takes its
                                     # own (true; the dense ones false: their heads read none), `videos`
                                     # is --videos (true). Without them a store is ~2 % of the bytes
    sample_rate: int = 16000         # audio rate fed to VGGish
    decoder: str = "auto"            # auto (decord, then ffmpeg where decord fails) | decord | ffmpeg
    clip_model: str = "ViT-L-14-quickgelu"   # any open_clip model name (OpenAI weights need -quickgelu)
    clip_weights: str = "weights/ViT-L-14-openai.pt"   # a local file (README: Pretrained weights)
    clip_pretrained_tag: str = "openai"      # open_clip tag, used only with download: true
    patch_grid: int = 8              # pooled patch grid g x g (LLP, ViT-L-14: 8 -> 11.6 GB; 0 = the
                                     # model's own grid, 16 x 16 -> 46.6 GB)
    vggish_weights: str = "weights/vggish-10086976.pth"
    random_weights: bool = False     # true only on purpose: recorded in the store, every output says so
    download: bool = False           # true: fetch missing weights from the official URLs (needs internet)
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    precision: str = "fp32"          # fp32 | bf16 | fp16 for CLIP frames and VGGish (text stays fp32); bf16
                                     # ~2x on GPUs and AVX512-BF16 CPUs
    clip_batch: int = 80             # frames per encoder batch; bigger batches run VGGish faster on CPU
    clips_per_task: int = 8          # clips decoded and encoded together by one worker task
    decode_threads: int = 1          # decoder threads inside a worker; more oversubscribes the cores
                                     # (BENCHMARKS.md)
    decode_block: int = 80           # T=0: a video's frames decoded and encoded this many steps at a time,
                                     # so a long one never holds them all (the same features); 0 = each
                                     # video whole
    workers: int = 2                 # local Dask workers; 0 = run in this process, no Dask
    scheduler: typing.Optional[str] = None   # e.g. tcp://host:8786: an existing Dask cluster
    threads_per_worker: int = 0      # torch threads per worker; 0 = cores / workers
    compression_level: int = 3       # zstd level of the feature arrays
    keep_freed_memory: bool = True   # workers keep freed encoder memory for the next batch instead of
                                     # page-faulting it in again (glibc; BENCHMARKS.md)
    pin_workers: bool = True         # local CPU workers: worker k runs on its own share of the cores
                                     # (Linux; BENCHMARKS.md)
    retry_failed: bool = False       # extract the clips that failed before again
    repair: bool = False             # verify every chunk of the done clips and extract the damaged ones
                                     # again (--repair)


@dataclass
class DatasetsConfig:
    """avu extract --dataset NAME --root DIR: where each benchmark's files lie under --root
    (relative paths; the official layouts by default; video paths are templates with {id} or
    {file}) and how its targets are made. See pipeline/datasets/."""

    avs_mask_size: int = 224         # AVSBench masks resized (nearest) to this square (the official 224)
    ave_annotations: str = "."       # Annotations.txt + {train,val,test}_order.h5 (or DERIVED_ave_splits.csv)
    ave_videos: str = "AVE/{id}.mp4"
    llp_annotations: str = "."       # AVVP_train.csv, AVVP_{val,test}_pd.csv, AVVP_eval_{audio,visual}.csv
    llp_videos: str = "LLP/{id}.mp4"   # id = the first 11 characters of the filename
    vggss_annotations: str = "."     # vggss.json (+ vggss_test.csv, checked against it)
    vggss_train_list: str = "vggsound_train.txt"   # optional (ours), in vggss_annotations: training clip
                                     # ids, one a line, ",class" optional
    vggss_videos: str = "VGGSS/{file}.mp4"
    avs_s4_folder: str = "Single-source"   # s4_meta_data.csv, s4_data/{visual_frames,audio_wav,gt_masks}
    avs_ms3_folder: str = "Multi-sources"  # ms3_meta_data.csv, ms3_data/{visual_frames,audio_wav,gt_masks}
    avss_folder: str = "."           # metadata.csv, label2idx.json, {v1s,v1m,v2}/<uid>/{frames,labels_rgb,audio.wav}
    music_avqa_annotations: str = "json_update"    # avqa-{train,val,test}.json (the train file is not public)
    music_avqa_videos: str = "MUSIC-AVQA/{id}.mp4"
    unav100_annotations: str = "."   # unav100_annotations.json
    unav100_videos: str = "videos"   # <id>.mp4 (or .mkv, .webm)
    activitynet_annotations: str = "."   # activity_net.v1-3.min.json; else BSN's anet_anno_action.json +
                                     # video_info_new.csv (+ action_name.csv); else sample_detection_prediction.json
    activitynet_videos: str = "videos"   # v_<id>.mp4 or <id>.mp4 (or .mkv, .webm)
    desed_annotations: str = "."     # validation.tsv, validation_durations.tsv, public.tsv (here or in DESED's
                                     # metadata/validation/ and metadata/eval/ below it)
    desed_audio: str = "audio"       # validation/<filename>, eval/public/<filename> (.wav; a video of the
                                     # same stem beside it is taken instead)


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


# ----------------------------------------------------------------------------- the settings file
HEADER = """\
# Every setting of every avu stage, and its default. The defaults live in the stages' dataclasses
# (pipeline/config.py: ExtractConfig, DatasetsConfig; trainer/config.py: TrainConfig), which this
# file is written from (`avu settings > stages.yaml`; a test checks that they agree), so every
# setting here is commented out. Uncomment a line to change it for every command, or give it as
# key=value on the command line:
#   avu extract --videos DIR --out STORE workers=4 patch_grid=0
# `--config FILE` reads another file like this one. Relative paths are taken from this file's folder.
"""
COMMENT_COLUMN = 30


def documented(cls: type) -> list[tuple[str, object, list[str]]]:
    """(name, default, comment lines) of every setting of a stage dataclass: the comment written
    beside the field in its source, continued on the comment-only lines below it."""
    import inspect
    import re

    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, list[str]] = {}
    last = None
    for line in inspect.getsource(cls).splitlines():
        field_line = re.match(r"    (\w+): [^#]*?(?:#\s?(.*))?$", line)
        if field_line and field_line.group(1) in names:
            last = field_line.group(1)
            comments[last] = [field_line.group(2).strip()] if field_line.group(2) else []
        elif last is not None and re.match(r"\s+#", line):
            comments[last].append(line.strip()[1:].strip())
        else:
            last = None
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f.name, default, comments.get(f.name, [])))
    return out


def _scalar(value: object) -> str:
    """`value` as YAML reads it back: a flow scalar, list or mapping on one line."""
    return yaml.safe_dump([value], default_flow_style=True, width=10 ** 6).strip()[1:-1]


def settings_text(stages: dict[str, type]) -> str:
    """The settings file: every stage's section, each setting commented out with its default and
    its comment, the section introduced by its dataclass's docstring."""
    import inspect

    lines = [HEADER]
    for section, cls in stages.items():
        lines += [f"# {line}".rstrip() for line in inspect.cleandoc(cls.__doc__ or "").splitlines()]
        lines.append(f"{section}:")
        for name, default, comment in documented(cls):
            setting = f"  # {name}: {_scalar(default)}"
            if not comment:
                lines.append(setting)
                continue
            lines.append(f"{setting.ljust(COMMENT_COLUMN - 1)} # {comment[0]}")
            lines += [f"  #{' ' * (COMMENT_COLUMN - 4)} # {more}" for more in comment[1:]]
        lines.append("")
    return "\n".join(lines)
