"""The common interface of the adapters (an Adapter per benchmark, a Dataset per parse, a Clip
per sample) and the few helpers several of them share. Kept apart from __init__ so that
adapters can import it. The vocabulary (pipeline/vocab.py) and the synthetic data
(pipeline/synth.py) are built from the adapters, so an adapter module imports neither at its
top: `Dataset.vocab` and each adapter's `synth` import them when called.

Every value an adapter takes from a file goes through a helper here, so that a malformed file
fails with `FILE:LINE: what is wrong` (a DatasetError; the CLI prints it and exits 2):
read_text (UTF-8, naming the line and column of bad bytes), read_csv (rows that know their
line; required columns checked once, from the header) with field() and split_field(), and
JsonList (a JSON list of entries; an entry is named by its index, its id and the line and
column where it starts) and JsonTree (nested JSON objects, ActivityNet's `database`: a value is
named by its path and the line and column where it starts). The dense benchmarks also share
MediaFolder (a clip's media among several extensions), clean_events (their quirks, counted),
dense_targets (the arrays every dense clip holds) and dense_clip_targets (both, over a dataset)."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..config import DatasetsConfig

if TYPE_CHECKING:
    from ..vocab import Vocab

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """An annotation file is missing or says something the adapter cannot take."""


class Invalid(ValueError):
    """Raised by a value converter (field, JsonList.value) with the reason, which is shown."""


@dataclass
class Clip:
    clip_id: str                       # unique in the dataset (AVE: "<row>_<video id>")
    source: str | dict                 # a video path, or {"frames": [one image per second], "audio": wav}
    splits: tuple[str, ...]            # usually one; a MUSIC-AVQA video can be in val and test
    targets: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)   # small arrays, same shapes in every clip
    dense: Callable[[Counter], dict[str, np.ndarray]] | None = None  # big arrays (masks), made when written


@dataclass
class Dataset:
    name: str
    T: int
    clips: list[Clip]                  # every sample the annotations name, media present or not
    classes: list[str]                 # the task's classes in index order (valid_ids follow it)
    quirks: Counter = dataclasses.field(default_factory=Counter)   # what was odd in the files, and how often
    attrs: dict = dataclasses.field(default_factory=dict)          # more store attributes (answer list, ...)
    dense_shapes: dict[str, tuple[tuple, str]] = dataclasses.field(default_factory=dict)  # name -> (shape, dtype)
    dense_key: str = ""                # settings the dense arrays depend on (mask size)
    questions: dict[str, list] | None = None            # MUSIC-AVQA's question table

    @property
    def vocab(self) -> Vocab:
        """The store's vocabulary: the shared one plus the names of `classes` it lacks
        (MUSIC-AVQA answers found only in the user's files), appended."""
        from ..vocab import VOCAB        # built from the adapters, which import this module

        return VOCAB.extended(self.classes)

    def split_names(self) -> list[str]:
        names = {s for c in self.clips for s in c.splits}
        return [s for s in SPLITS if s in names] + sorted(names - set(SPLITS))

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if name in c.splits]


@dataclass(frozen=True)
class Adapter:
    """Everything stage one knows of one benchmark; pipeline/datasets/__init__.py lists them
    (ADAPTERS) and the vocabulary, the task prompts and the synthetic data are read from there."""

    name: str                          # the task name: --dataset, the store's attrs["task"]
    T: int                             # seconds per clip (overrides the extract setting)
    classes: list[str]                 # classes (answers) in index order: vocabulary tokens, valid_ids
    prompt: str                        # the task instruction; stage one stores its CLIP text embedding
    load: Callable[[Path, DatasetsConfig], Dataset]   # the benchmark's files under --root -> Dataset
    synth: Callable[[Path, np.random.Generator, int], None]   # (folder, rng, training clips): a
                                       # synthetic copy in the official layout (pipeline/synth.py)
    synth_classes: list[str]           # the classes the synthetic copy uses (official spellings)
    demo_clips: int                    # training clips `avu demo` synthesises (its `clips`)
    synth_silent: tuple[str, ...] = ()   # things the synthetic copy draws that are never heard
    synth_tiles: bool = False          # its objects are flat-coloured tiles, not shapes
    hop: float = 1.0                   # seconds per feature step, the benchmark's default (the
                                       # extract setting `hop` overrides it; dense tasks: 0.25)
    demo_hop: float = 0.0              # `avu demo`'s step for it (0: its hop; trainer/demo.py says why)
    patches: bool = True               # its store holds CLIP patch tokens (False: its stage-two head
                                       # reads none, and they are ~98 % of a store's bytes; the
                                       # extract setting `patches` overrides it)
    class_template: str = ""           # the class prompt, "{}" = the class name (dense tasks, UniAV's
                                       # templates): stage one stores shared/class_emb of every class


def need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    return path


_BREAK = re.compile(rb"\r\n|\r|\n")


def read_text(path: Path, what: str = "annotation file") -> str:
    """A UTF-8 text file (a BOM is dropped). Bytes that are not UTF-8 fail naming FILE:LINE:COL
    (COL counts bytes) and the bytes; nothing is replaced or skipped."""
    need_file(path, what)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        at, end = skip + err.start, skip + err.end
        line = len(_BREAK.findall(data, 0, at)) + 1
        col = at - max(data.rfind(b"\n", 0, at), data.rfind(b"\r", 0, at), skip - 1)     # the BOM is no column
        raise DatasetError(f"{path}:{line}:{col}: not UTF-8 text: bytes {data[at:end]!r} at byte offset {at} "
                           f"({err.reason}); save the file as UTF-8") from None


class Row(dict):
    """One row of a headed CSV/TSV: column -> stripped value; `path` and `line` (where it starts)."""

    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def read_csv(path: Path, delimiter: str = ",", columns: tuple[str, ...] = ()) -> list[Row]:
    """Rows of a headed CSV/TSV (CRLF or LF, BOM tolerated), blank rows skipped, keys stripped.
    A column of `columns` missing from the header fails once, at its line; a row too short to
    hold one of them, or a quoted field running over several lines (an unbalanced quote
    swallowing the rows after it), fails at the row's first line."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    lines, start = [], 1
    try:
        for values in reader:
            lines.append((start, reader.line_num, values))
            start = reader.line_num + 1
    except csv.Error as err:
        raise DatasetError(f"{path}:{start}: {err}") from None
    while lines and not any(v.strip() for v in lines[0][2]):
        lines.pop(0)                                  # blank lines above the header
    if not lines:
        raise DatasetError(f"{path}: empty file")
    head_line, head = lines[0][0], [h.strip() for h in lines[0][2]]
    sep = "tab" if delimiter == "\t" else repr(delimiter)
    absent = [c for c in columns if c not in head]
    if absent:
        hint = f" (the file should be {sep}-separated)" if len(head) == 1 else ""
        raise DatasetError(f"{path}:{head_line}: no column {', '.join(map(repr, absent))}; "
                           f"columns: {', '.join(head)}{hint}")
    need = max((head.index(c) for c in columns), default=0)
    rows = []
    for first, last, values in lines[1:]:
        if not any(v.strip() for v in values):
            continue
        if last > first:
            raise DatasetError(f"{path}:{first}: a quoted field runs from line {first} to line {last} "
                               f"(an unbalanced '\"'?)")
        if len(values) <= need:
            raise DatasetError(f"{path}:{first}: {len(values)} field{'s' * (len(values) != 1)}, no "
                               f"{head[need]!r} (column {need + 1} of {len(head)}: {', '.join(head)}; "
                               f"{sep}-separated)")
        row = Row(zip(head, (v.strip() for v in values)))
        row.path, row.line = path, first
        rows.append(row)
    return rows


_KINDS = {int: "an integer", float: "a number", str: "a value"}


def field(row: Row, name: str, convert: Callable = str, what: str | None = None, empty_ok: bool = False) -> Any:
    """row[name] passed through `convert`; a value it refuses (ValueError) fails as
    FILE:LINE: <name> <value> is not <what>. Empty values fail unless `empty_ok`."""
    value = row.get(name)
    if value is None:
        raise DatasetError(f"{row.where()}: no {name!r} field")
    if not value and not empty_ok:
        raise DatasetError(f"{row.where()}: {name} is empty")
    try:
        return convert(value)
    except (ValueError, TypeError) as err:
        why = f": {err}" if isinstance(err, Invalid) else ""
        raise DatasetError(f"{row.where()}: {name} {value!r} is not "
                           f"{what or _KINDS.get(convert, convert.__name__)}{why}") from None


def split_field(row: Row, name: str = "split") -> str:
    """A split column: one of train, val, test."""
    value = field(row, name)
    if value not in SPLITS:
        raise DatasetError(f"{row.where()}: {name} {value!r} is not one of {', '.join(SPLITS)}")
    return value


def read_json(path: Path, what: str = "annotation file") -> tuple[str, Any]:
    """(text, parsed value); a syntax error fails as FILE:LINE:COL."""
    text = read_text(path, what)
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    except RecursionError:
        raise DatasetError(f"{path}: not usable JSON: nested too deeply") from None


_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def json_type(value: Any) -> str:
    """How JSON would call a parsed value, for messages."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _short(value: Any, n: int = 60) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


REQUIRED = object()


class JsonList:
    """A JSON file holding a list of objects (entries). An entry is named in messages by its
    index, its `id_key` value and the line and column where it starts: FILE:LINE:COL: entry K
    (id_key V). Positions are found only when a message needs them."""

    def __init__(self, path: Path, what: str, id_key: str):
        self.path, self.id_key = path, id_key
        self.text, self.items = read_json(path, what)
        if not isinstance(self.items, list):
            raise DatasetError(f"{path}: expected a JSON list of entries, got {json_type(self.items)}")
        self._starts: list[int] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def where(self, k: int) -> str:
        e = self.items[k]
        ident = e.get(self.id_key) if isinstance(e, dict) else None
        at = self._position(k)
        return (f"{self.path}:{at}: entry {k}" if at else f"{self.path}: entry {k}") + \
            (f" ({self.id_key} {_short(ident)})" if ident is not None else "")

    def _position(self, k: int) -> str:
        """Where entry k starts, as LINE:COL (counted as json counts: lines end at \\n, columns are characters)."""
        if self._starts is None:                      # re-read the list one element at a time, keeping offsets
            decoder, ws, text, starts = json.JSONDecoder(), re.compile(r"[ \t\n\r]*"), self.text, []
            try:
                i = ws.match(text, ws.match(text).end() + 1).end()      # past "["
                while len(starts) < len(self.items):
                    starts.append(i)
                    i = ws.match(text, decoder.raw_decode(text, i)[1]).end()
                    i = ws.match(text, i + 1).end()                      # past ","
            except (ValueError, IndexError):          # cannot happen for text json.loads took; never hide the error
                starts = []
            self._starts = starts
        if k >= len(self._starts):
            return ""
        at = self._starts[k]
        line, col = self.text.count("\n", 0, at) + 1, at - self.text.rfind("\n", 0, at)
        return f"{line}:{col}"

    def value(self, k: int, key: str, kinds: tuple[type, ...], convert: Callable | None = None,
              what: str = "", default: Any = REQUIRED) -> Any:
        """Entry k's `key`, which must be one of the JSON `kinds` (bool is never an int) and
        pass `convert` (a ValueError or TypeError fails as: <key> <value> is not <what>)."""
        e = self.items[k]
        if not isinstance(e, dict):
            raise DatasetError(f"{self.where(k)}: expected an object, got {json_type(e)} {_short(e)}")
        if key not in e:
            if default is not REQUIRED:
                return default
            raise DatasetError(f"{self.where(k)}: no key {key!r}; keys: {', '.join(map(str, e))}")
        return json_value(e[key], key, kinds, convert, what, lambda: self.where(k))


def json_value(v: Any, key: str, kinds: tuple[type, ...], convert: Callable | None, what: str,
               where: Callable[[], str]) -> Any:
    """`key`'s value v, which must be one of the JSON `kinds` (bool is never an int) and pass
    `convert`; failures name `where()` (JsonList.value, JsonTree.value). `where` is called only on
    a failure: finding a position walks the file's text, and a file has thousands of values."""
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        expected = " or ".join(_JSON_NAMES[t] for t in kinds)
        shown = "" if v is None or isinstance(v, bool) else f" {_short(v)}"
        raise DatasetError(f"{where()}: {key} is {json_type(v)}{shown}, expected {expected}")
    if convert is None:
        return v
    try:
        return convert(v)
    except (ValueError, TypeError) as err:
        why = f": {err}" if isinstance(err, Invalid) else ""
        raise DatasetError(f"{where()}: {key} {_short(v)} is not {what}{why}") from None


def nonempty(value: str) -> str:
    if not value.strip():
        raise Invalid("it is empty")
    return value


def one_of(table: dict[str, Any], fold: Callable[[str], str] = str, message: str = "") -> Callable[[str], Any]:
    """A converter (for field, JsonTree.value) from a key of `table`, after `fold` (str.lower: any
    case), to its value; any other value is Invalid: `message`, else "expected one of KEYS"."""
    def convert(value: str) -> Any:
        if fold(value) not in table:
            raise Invalid(message or f"expected one of {', '.join(table)}")
        return table[fold(value)]
    return convert


def is_number(value: Any) -> bool:
    """A JSON number (int or float, not bool), not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def read_image(path: Path, convert: Callable) -> np.ndarray:
    """An image file (a mask PNG) as an array, after `convert(PIL image)`; a file PIL cannot
    read fails naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(convert(im))
    except (OSError, SyntaxError, ValueError) as err:          # PIL: UnidentifiedImageError, truncated, broken
        raise DatasetError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None


def resize_nearest(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) integer map -> (size, size), nearest neighbour (PIL NEAREST, as AVSBench's code)."""
    from PIL import Image

    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST))


# ----------------------------------------------------------------------------- dense benchmarks
class JsonTree:
    """A JSON file of nested objects and lists (ActivityNet's `{"database": {id: {...}}}`). A value
    is named in messages by its path and where it starts: FILE:LINE:COL: database["abc"].annotations[2].
    Positions are found only when a message needs them (by walking the text to that path)."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self.text, self.data = read_json(path, what)

    def node(self, at: tuple) -> Any:
        value = self.data
        for k in at:
            value = value[k]
        return value

    def where(self, at: tuple) -> str:
        name = ""
        for k in at:                                  # field names as .name, ids and indices in brackets
            plain = isinstance(k, str) and re.fullmatch(r"[a-z_]+", k)
            name += (f".{k}" if name else k) if plain else f"[{json.dumps(k)}]"
        pos = _json_position(self.text, at)
        return f"{self.path}:{pos}: {name or 'the top level'}" if pos else f"{self.path}: {name or 'the top level'}"

    def value(self, at: tuple, key: str, kinds: tuple[type, ...], convert: Callable | None = None,
              what: str = "", default: Any = REQUIRED) -> Any:
        """The object at path `at`'s `key`, which must be one of the JSON `kinds` (bool is never an
        int) and pass `convert` (a ValueError or TypeError fails as: <key> <value> is not <what>)."""
        obj = self.node(at)
        if not isinstance(obj, dict):
            raise DatasetError(f"{self.where(at)}: expected an object, got {json_type(obj)} {_short(obj)}")
        if key not in obj:
            if default is not REQUIRED:
                return default
            raise DatasetError(f"{self.where(at)}: no key {key!r}; keys: {', '.join(map(str, obj)) or 'none'}")
        return json_value(obj[key], key, kinds, convert, what, lambda: self.where((*at, key)))


def _json_position(text: str, at: tuple) -> str:
    """LINE:COL (as json counts them) where the value at path `at` starts in `text`; "" if not found."""
    decoder, ws = json.JSONDecoder(), re.compile(r"[ \t\n\r]*")
    try:
        i = ws.match(text).end()
        for k in at:
            close, i = {"{": "}", "[": "]"}[text[i]], ws.match(text, i + 1).end()
            n = 0
            while text[i] != close:
                if close == "}":
                    name, i = decoder.raw_decode(text, i)
                    i = ws.match(text, ws.match(text, i).end() + 1).end()       # past ":"
                    found = name == k
                else:
                    found, n = n == k, n + 1
                if found:
                    break
                i = ws.match(text, decoder.raw_decode(text, i)[1]).end()
                if text[i] == ",":
                    i = ws.match(text, i + 1).end()
            else:
                return ""
    except (ValueError, IndexError, KeyError):      # cannot happen for text json.loads took; never hide the error
        return ""
    line = text.count("\n", 0, i) + 1
    return f"{line}:{i - text.rfind(chr(10), 0, i)}"


VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")


class MediaFolder:
    """One folder's media files, listed once (a dataset has thousands): a clip's file is the first
    of its candidate names, each tried with every extension in order, that exists."""

    def __init__(self, folder: Path, extensions: tuple[str, ...] = VIDEO_EXTENSIONS):
        self.folder, self.extensions = Path(folder), extensions
        self.names = set(os.listdir(self.folder)) if self.folder.is_dir() else set()

    def find(self, *stems: str) -> str | None:
        for stem in stems:
            for ext in self.extensions:
                if stem + ext in self.names:
                    return str(self.folder / (stem + ext))
        return None

    def path(self, *stems: str) -> str:
        """The file found, else the expected one (the first name and extension; reported missing)."""
        return self.find(*stems) or str(self.folder / (stems[0] + self.extensions[0]))


Event = tuple[float, float, int]          # (start, end) in seconds, class index
Videos = dict[str, tuple[str, float, list[Event]]]   # a dense dataset: id -> (split, duration or NaN, events)


def segment(value: list) -> tuple[float, float]:
    """A JSON [start, end] in seconds (numbers, start <= end)."""
    if len(value) != 2 or not all(is_number(v) for v in value):
        raise Invalid("expected [start, end], two numbers")
    if value[0] > value[1]:
        raise Invalid("its start is after its end")
    return float(value[0]), float(value[1])


def positive(value: float) -> float:
    if not is_number(value) or not value > 0:
        raise Invalid("not above 0")
    return float(value)


def clean_events(events: list[Event], duration: float, quirks: Counter, noun: str = "events") -> list[Event]:
    """One clip's events as the targets keep them, the oddities counted: duplicates (same class, both
    ends within 1e-3 s of an earlier one) and zero-length ones are kept (the official GT keeps them);
    those reaching past the duration (when known) or before 0 are clipped to [0, duration]."""
    out = []
    for k, (start, end, label) in enumerate(events):
        quirks[f"duplicate_{noun}"] += any(l == label and abs(s - start) <= 1e-3 and abs(e - end) <= 1e-3
                                           for s, e, l in events[:k])
        quirks[f"zero_length_{noun}"] += start == end
        quirks[f"{noun}_before_zero"] += start < 0
        if not math.isnan(duration):
            quirks[f"{noun}_past_duration"] += end > duration
            quirks[f"{noun}_starting_past_duration"] += start > duration
            start, end = min(start, duration), min(end, duration)
        out.append((max(start, 0.0), max(end, 0.0), label))
    return out


def dense_targets(events: list[Event], E: int, duration: float) -> dict[str, np.ndarray]:
    """A dense clip's targets: segments (E, 2) float32 seconds (NaN rows pad), segment_labels (E,)
    int16 class index (-1 pads), duration () float32 seconds (NaN: unknown)."""
    segments = np.full((E, 2), np.nan, np.float32)
    labels = np.full(E, -1, np.int16)
    for k, (start, end, label) in enumerate(events):
        segments[k] = start, end
        labels[k] = label
    return {"segments": segments, "segment_labels": labels, "duration": np.float32(duration)}


def dense_clip_targets(videos: Videos, quirks: Counter, noun: str = "events") -> dict[str, dict[str, np.ndarray]]:
    """id -> its targets (dense_targets) for every video of a dense dataset: its events cleaned
    (clean_events, the quirks counted), padded to E = the most events in one video (at least 1)."""
    events = {vid: clean_events(ev, duration, quirks, noun) for vid, (_, duration, ev) in videos.items()}
    E = max(1, max(map(len, events.values())))
    return {vid: dense_targets(events[vid], E, duration) for vid, (_, duration, _) in videos.items()}
