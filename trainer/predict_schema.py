"""The schema of `avu predict`'s predictions.json (JSON Schema, draft 2020-12), versioned.

Version 1. Times are seconds on the video's own axis (step k = [k * hop, (k + 1) * hop)); scores
are probabilities in [0, 1] except VGG-SS's `max` and `heatmap` (cosine similarities in
[-1, 1]); classes are named, never indexed. A reader checks "schema" and "version" first; a
later version adds keys (readers ignore what they do not know) or bumps the version.

    {"schema": "avu-predictions", "version": 1,
     "random_weights": bool, "notice": str,                      # RANDOM-WEIGHT FEATURES: on every output
     "video": {path, name, stem, duration, steps, hop, audio_seconds, visual_seconds},
     "run": {path, name, tasks, random_weights},
     "provenance": {features (the stores' encoders and settings), stores, extract, avu_version, created},
     "warnings": [str], "timing": {extract_seconds, heads_seconds, total_seconds},
     "files": {json, page, overlays: {task: [png, ...]}},
     "tasks": {benchmark: {benchmark, head, kind, modality, hop, steps, window_steps, windows: [{start, end}],
                           checkpoint, classes: [str],
                           seconds: [{start, end, ...per benchmark}],     # one row per step
                           events: [{task, label, modality, start, end, score}],
                           ...per benchmark (llp: windows' video_labels; vggss: grid;
                              music-avqa: questions [{question, answer, top, windows}])}}}

Event scores: the mean probability over the event (AVSS: the mean fraction of the frame
the class covers; it is an event where that is at least 1%).
kind: what the head's outputs are (trainer/predict.py HEAD_KINDS): segments (AVE), parsing (LLP),
ssl (VGG-SS), mask (S4 / MS3), semantic (AVSS), qa (MUSIC-AVQA), dense (UnAV-100, ActivityNet,
DESED: one window, the whole video; `detections` all its Soft-NMS top-100 per window, `events`
those scoring at least 0.3, modality the benchmark's: audio-visual, visual or audio); a new head
adds a kind. Every task also gives `hop` and `steps`: its store's step (dense 0.25 s) and the
video's steps at it (one extraction per step).
Per-step rows: AVE {label, score, top: [{label, score}] x 3}; LLP {audio, visual,
audio-visual: [{label, score}]}; VGG-SS {peak: [x, y] (0-1 of the frame), max, heatmap: g x g};
S4 / MS3 {area (fraction of the frame sounding), score (mean probability there)}; AVSS
{objects: [{label, area}]}.
"""

from __future__ import annotations

SCHEMA_NAME = "avu-predictions"
SCHEMA_VERSION = 1

_num = {"type": "number"}
_prob = {"type": "number", "minimum": 0, "maximum": 1}
_time = {"type": "number", "minimum": 0}
_scored = {"type": "object", "required": ["label", "score"],
           "properties": {"label": {"type": "string"}, "score": _prob}}
_span = {"type": "object", "required": ["start", "end"], "properties": {"start": _time, "end": _time}}
_event = {"type": "object", "required": ["task", "label", "modality", "start", "end", "score"],
          "properties": {"task": {"type": "string"}, "label": {"type": "string"},
                         "modality": {"enum": ["audio", "visual", "audio-visual"]},
                         "start": _time, "end": _time, "score": _prob}}
_second = {"type": "object", "required": ["start", "end"], "properties": {
    "start": _time, "end": _time,
    "label": {"type": "string"}, "score": _prob, "top": {"type": "array", "items": _scored, "maxItems": 3},
    "audio": {"type": "array", "items": _scored}, "visual": {"type": "array", "items": _scored},
    "audio-visual": {"type": "array", "items": _scored},
    "peak": {"type": "array", "items": _prob, "minItems": 2, "maxItems": 2},
    "max": {"type": "number", "minimum": -1.0001, "maximum": 1.0001},
    "heatmap": {"type": "array", "items": {"type": "array", "items": _num}},
    "area": _prob,
    "objects": {"type": "array", "items": {"type": "object", "required": ["label", "area"],
                                           "properties": {"label": {"type": "string"}, "area": _prob}}},
}}
_question = {"type": "object", "required": ["question", "answer", "top", "windows"], "properties": {
    "question": {"type": "string"}, "answer": {"type": "string"},
    "top": {"type": "array", "items": _scored, "minItems": 1, "maxItems": 3},
    "windows": {"type": "array", "items": {"type": "object", "required": ["start", "end", "top"],
                                           "properties": {"start": _time, "end": _time,
                                                          "top": {"type": "array", "items": _scored}}}}}}
_task = {"type": "object",
         "required": ["benchmark", "head", "kind", "modality", "window_steps", "windows", "checkpoint", "classes",
                      "seconds", "events"],
         "properties": {"benchmark": {"type": "string"}, "head": {"type": "string"},
                        "kind": {"enum": ["segments", "parsing", "ssl", "mask", "semantic", "qa", "dense"]},
                        "hop": {"type": "number", "exclusiveMinimum": 0}, "steps": {"type": "integer", "minimum": 1},
                        "detections": {"type": "array", "items": _event, "maxItems": 100000},
                        "modality": {"type": "string"},
                        "window_steps": {"type": "integer", "minimum": 1},
                        "windows": {"type": "array", "items": _span, "minItems": 1},
                        "checkpoint": {"type": "string"}, "classes": {"type": "array", "items": {"type": "string"}},
                        "seconds": {"type": "array", "items": _second}, "events": {"type": "array", "items": _event},
                        "grid": {"type": "integer", "minimum": 1},
                        "questions": {"type": "array", "items": _question}}}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://github.com/avu/avu/predictions-v1.json",
    "title": "avu predict: predictions of a trained AV-Unified run on one video",
    "type": "object",
    "required": ["schema", "version", "random_weights", "notice", "video", "run", "provenance", "warnings",
                 "tasks", "files"],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "version": {"const": SCHEMA_VERSION},
        "random_weights": {"type": "boolean"},
        "notice": {"type": "string"},
        "video": {"type": "object", "required": ["path", "name", "stem", "duration", "steps", "hop"],
                  "properties": {"path": {"type": "string"}, "name": {"type": "string"}, "stem": {"type": "string"},
                                 "duration": _time, "steps": {"type": "integer", "minimum": 1},
                                 "hop": {"type": "number", "exclusiveMinimum": 0},
                                 "audio_seconds": _time, "visual_seconds": _time}},
        "run": {"type": "object", "required": ["path", "name", "tasks", "random_weights"],
                "properties": {"tasks": {"type": "array", "items": {"type": "string"}},
                               "random_weights": {"type": "boolean"}}},
        "provenance": {"type": "object", "required": ["features", "stores", "extract"],
                       "properties": {"features": {"type": "object", "required": ["clip_model", "encoders"]},
                                      "stores": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "timing": {"type": "object", "additionalProperties": _time},
        "files": {"type": "object", "properties": {
            "json": {"type": "string"}, "page": {"type": "string"},
            "overlays": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}}},
        "tasks": {"type": "object", "minProperties": 1, "additionalProperties": _task},
    },
}
