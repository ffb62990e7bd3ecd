"""`avu predict`'s pictures and pages: overlay PNGs and a self-contained index.html per video.

    overlays/<task>/<step>.png   the frame of that step with the head's output over it: VGG-SS
                                 heatmap (jet, min-max per frame), S4 / MS3 sounding mask (red),
                                 AVSS class mask (a colour per class, background clear)
    index.html                   everything inline (images as data: URIs, no script or style from
                                 anywhere): the timeline per task and modality (SVG), the frame with
                                 every overlay under a slider over the steps, the questions and
                                 answers, the run's provenance; works from file://
    <DIR>/index.html             a folder of videos: one line per video, linking its page

Spatial outputs are drawn over the whole frame, stretched, as the stores' targets are (AVSBench
masks and VGG-SS boxes are in whole-frame coordinates). Long videos: overlays and page images
for at most MAX_IMAGES steps, evenly spaced (every step's numbers are in predictions.json).
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import html
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

MAX_IMAGES = 300        # steps with pictures, per task
THUMB = 320             # picture width in pixels
SPATIAL = ("ssl", "mask", "semantic")      # task kinds (trainer/predict.py HEAD_KINDS) drawn over the frame
_TAB20 = None


def image_steps(n: int) -> list[int]:
    """The steps that get pictures: all, or MAX_IMAGES evenly spaced."""
    stride = max(1, math.ceil(n / MAX_IMAGES))
    return list(range(0, n, stride))


def _thumb(frame: np.ndarray) -> Image.Image:
    img = Image.fromarray(frame)
    w, h = img.size
    return img.resize((THUMB, max(1, round(h * THUMB / w))), Image.BILINEAR)


def _palette(k: int) -> tuple[int, int, int]:
    global _TAB20
    if _TAB20 is None:
        from matplotlib import colormaps

        _TAB20 = (np.asarray(colormaps["tab20"].colors) * 255).astype(np.uint8)
    return tuple(int(c) for c in _TAB20[k % 20])


def overlay(frame: Image.Image, kind: str, layer: np.ndarray) -> Image.Image:
    """The frame with one step's output of a task of `kind` over it (module docstring)."""
    size = frame.size
    base = np.asarray(frame.convert("RGB"), np.float32)
    if kind == "ssl":
        from matplotlib import colormaps

        span = float(np.ptp(layer))
        norm = (layer - layer.min()) / span if span > 0 else np.zeros_like(layer)
        up = np.asarray(Image.fromarray(norm.astype(np.float32)).resize(size, Image.BILINEAR))
        rgb, alpha = colormaps["jet"](np.clip(up, 0, 1))[..., :3] * 255, np.full(up.shape, 0.5)
    elif kind == "mask":
        on = np.asarray(Image.fromarray((layer > 0.5).astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
        rgb, alpha = np.broadcast_to(np.array([255.0, 25.0, 25.0]), (*on.shape, 3)), on * 0.55
    else:
        classes = np.asarray(Image.fromarray(layer.astype(np.uint8)).resize(size, Image.NEAREST))
        lut = np.array([_palette(k) for k in range(256)], np.float32)
        rgb, alpha = lut[classes], (classes > 0) * 0.6
    out = base * (1 - alpha[..., None]) + rgb * alpha[..., None]
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def layers(kind: str, arrays: dict) -> np.ndarray:
    """(n, h, w) what is drawn for each step."""
    if kind == "ssl":
        return arrays["heatmap"]
    if kind == "mask":
        from trainer.predict import binary_masks

        return binary_masks(arrays, 128)
    return arrays["mask_classes"]


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def _data_uri(img: Image.Image, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 82} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def write_overlays(out: Path, doc: dict, arrays: dict, frames: np.ndarray) -> dict[str, list[str]]:
    """overlays/<task>/<step>.png for the spatial tasks; returns {task: [paths relative to out]}."""
    steps = image_steps(len(frames))
    thumbs = {k: _thumb(frames[k]) for k in steps}
    written = {}
    for task, kind in ((t, d["kind"]) for t, d in doc["tasks"].items() if d["kind"] in SPATIAL):
        folder = out / "overlays" / task
        folder.mkdir(parents=True, exist_ok=True)
        layer = layers(kind, arrays[task])
        written[task] = []
        for k in steps:
            name = f"overlays/{task}/{k:05d}.png"
            (out / name).write_bytes(_png(overlay(thumbs[k], kind, layer[k])))
            written[task].append(name)
    return written


# ----------------------------------------------------------------------------- the page
def colour(label: str) -> str:
    """A class's colour, the same on every page (from its name)."""
    h = int(hashlib.md5(label.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hls_to_rgb(h, 0.55, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def tracks(doc: dict) -> list[dict]:
    """Timeline rows: events per (task, modality), lanes where they overlap; levels per step
    (S4 / MS3 sounding area, VGG-SS peak similarity)."""
    rows = []
    for task, t in doc["tasks"].items():
        modalities = list(dict.fromkeys(e["modality"] for e in t["events"]))
        if t["kind"] == "parsing":
            modalities = ["audio", "visual", "audio-visual"]
        for m in modalities:
            events = sorted((e for e in t["events"] if e["modality"] == m), key=lambda e: e["start"])
            lanes: list[float] = []
            placed = []
            for e in events:
                lane = next((i for i, end in enumerate(lanes) if end <= e["start"]), len(lanes))
                if lane == len(lanes):
                    lanes.append(e["end"])
                lanes[lane] = e["end"]
                placed.append((lane, e))
            rows.append({"name": f"{task} · {m}", "kind": "events", "lanes": max(1, len(lanes)), "events": placed})
        if t["kind"] == "mask":
            rows.append({"name": f"{task} · sounding area", "kind": "level",
                         "values": [(s["start"], s["end"], s["area"]) for s in t["seconds"]]})
        if t["kind"] == "ssl":
            vals = [s["max"] for s in t["seconds"]]
            lo, hi = min(vals), max(vals)
            rows.append({"name": f"{task} · peak similarity", "kind": "level",
                         "values": [(s["start"], s["end"], (s["max"] - lo) / (hi - lo) if hi > lo else 0.5)
                                    for s in t["seconds"]]})
    return rows


def timeline_svg(doc: dict, width: int = 960) -> str:
    duration = max(doc["video"]["duration"], 1e-9)
    label_w, lane_h, gap, right = 190, 16, 6, 14
    x = lambda t: label_w + (width - right - label_w) * t / duration      # noqa: E731
    parts, y = [], 24
    for row in tracks(doc):
        height = lane_h * row.get("lanes", 1)
        parts.append(f'<text x="4" y="{y + 12}" class="track">{html.escape(row["name"])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{width - right - label_w}" height="{height}" class="lane"/>')
        if row["kind"] == "events":
            for lane, e in row["events"]:
                w = max(x(e["end"]) - x(e["start"]), 1)
                tip = f'{e["label"]} {e["start"]:.2f}-{e["end"]:.2f} s, score {e["score"]:.2f}'
                parts.append(f'<rect class="event" x="{x(e["start"]):.1f}" y="{y + lane * lane_h + 1}" '
                             f'width="{w:.1f}" height="{lane_h - 2}" fill="{colour(e["label"])}">'
                             f'<title>{html.escape(tip)}</title></rect>')
                if w > 8 * len(e["label"]) * 0.6:
                    parts.append(f'<text class="evlabel" x="{x(e["start"]) + 3:.1f}" y="{y + lane * lane_h + 12}">'
                                 f'{html.escape(e["label"])}</text>')
        else:
            for a, b, v in row["values"]:
                h = max(0.0, min(1.0, v)) * (height - 2)
                parts.append(f'<rect class="level" x="{x(a):.1f}" y="{y + height - 1 - h:.1f}" '
                             f'width="{max(x(b) - x(a) - 0.5, 0.5):.1f}" height="{h:.1f}"/>')
        y += height + gap
    ticks = []
    step = _tick_step(duration)
    t = 0.0
    while t <= duration + 1e-9:
        ticks.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="16" y2="{y}" class="tick"/>'
                     f'<text x="{x(t):.1f}" y="12" class="ticklabel">{t:g}s</text>')
        t += step
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 4}" '
            f'data-label-width="{label_w}" data-right="{right}" data-duration="{duration}">{"".join(ticks)}{"".join(parts)}'
            f'<line id="cursor" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="16" y2="{y}"/></svg>')


def _tick_step(duration: float) -> float:
    for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if duration / s <= 12:
            return s
    return 7200


def step_caption(doc: dict, k: int) -> str:
    """What the heads say about step k, as short text."""
    bits = []
    for task, t in doc["tasks"].items():
        if k >= len(t["seconds"]):
            continue
        s, kind = t["seconds"][k], t["kind"]
        if kind == "segments":
            bits.append(f"{task}: {s['label']} ({s['score']:.2f})")
        elif kind == "parsing":
            for m in ("audio", "visual", "audio-visual"):
                bits.append(f"{task} {m}: " + (", ".join(c["label"] for c in s[m]) or "-"))
        elif kind == "mask":
            bits.append(f"{task}: sounding {100 * s['area']:.0f}% of the frame")
        elif kind == "semantic":
            bits.append(f"{task}: " + (", ".join(f"{o['label']} {100 * o['area']:.0f}%" for o in s["objects"][:4]) or "-"))
        elif kind == "ssl":
            bits.append(f"{task}: peak at ({s['peak'][0]:.2f}, {s['peak'][1]:.2f})")
    return " · ".join(bits)


CSS = """
body{font:14px system-ui,sans-serif;margin:18px;color:#222;max-width:1100px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 8px}
.banner{background:#fff3b0;border:2px solid #d4a800;padding:8px 12px;font-weight:bold;margin:8px 0}
.warn{color:#8a5a00} .muted{color:#666}
#timeline .lane{fill:#f3f3f3} #timeline .track{font-size:11px;fill:#333}
#timeline .evlabel{font-size:10px;fill:#111;pointer-events:none} #timeline .level{fill:#5b8def}
#timeline .tick{stroke:#ddd} #timeline .ticklabel{font-size:10px;fill:#666;text-anchor:middle}
#cursor{stroke:#e00;stroke-width:2} #timeline{cursor:pointer;border:1px solid #ddd}
.frames{display:flex;flex-wrap:wrap;gap:10px} figure{margin:0} figcaption{font-size:12px;color:#444}
figure img{display:block;border:1px solid #ccc}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
#caption{margin:6px 0;font-size:13px} input[type=range]{width:640px}
"""

SCRIPT = """
(function(){
  var data = JSON.parse(document.getElementById('page-data').textContent);
  var slider = document.getElementById('step');
  var svg = document.getElementById('timeline');
  var cursor = document.getElementById('cursor');
  var lw = parseFloat(svg.getAttribute('data-label-width'));
  var duration = parseFloat(svg.getAttribute('data-duration'));
  var width = parseFloat(svg.getAttribute('width')) - parseFloat(svg.getAttribute('data-right'));
  function show(i){
    var k = data.steps[i];
    document.getElementById('frame').src = data.frames[i];
    Object.keys(data.overlays).forEach(function(task){
      document.getElementById('ov-' + task).src = data.overlays[task][i];
    });
    document.getElementById('when').textContent = data.times[i];
    document.getElementById('caption').textContent = data.captions[i];
    var x = lw + (width - lw) * (k * data.hop + data.hop / 2) / duration;
    cursor.setAttribute('x1', x); cursor.setAttribute('x2', x);
  }
  slider.addEventListener('input', function(){ show(parseInt(slider.value, 10)); });
  svg.addEventListener('click', function(ev){
    var r = svg.getBoundingClientRect();
    var t = (ev.clientX - r.left - lw) / (width - lw) * duration;
    var best = 0;
    data.steps.forEach(function(k, i){ if (k * data.hop <= t) best = i; });
    slider.value = best; show(best);
  });
  show(0);
})();
"""


def _provenance_rows(doc: dict) -> str:
    p = doc["provenance"]
    rows = [("run", f'{doc["run"]["name"]} ({doc["run"]["path"]})'),
            ("tasks of the run", ", ".join(doc["run"]["tasks"])),
            ("checkpoints", ", ".join(sorted({t["checkpoint"] for t in doc["tasks"].values()}))),
            ("encoders", json.dumps(p["features"].get("encoders"))),
            ("features", ", ".join(f"{k} {v}" for k, v in p["features"].items() if k != "encoders")),
            ("extraction", ", ".join(f"{k} {v}" for k, v in p["extract"].items())),
            ("stores", ", ".join(f"{t}: {s}" for t, s in p["stores"].items())),
            ("avu", f'{p.get("avu_version")}; predicted {p.get("created")}')]
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)


def _qa_html(doc: dict) -> str:
    asked = [q for t in doc["tasks"].values() if t["kind"] == "qa" for q in t["questions"]]
    if not asked:
        return '<p class="muted">No questions asked (--ask "QUESTION" asks the MUSIC-AVQA head).</p>'
    rows = []
    for q in asked:
        top = ", ".join(f'{a["label"]} {100 * a["score"]:.1f}%' for a in q["top"])
        rows.append(f'<tr><td>{html.escape(q["question"])}</td><td><b>{html.escape(q["answer"])}</b></td>'
                    f'<td>{html.escape(top)}</td></tr>')
    return "<table><tr><th>question</th><th>answer</th><th>top 3</th></tr>" + "".join(rows) + "</table>"


def write_page(out: Path, doc: dict, frames: np.ndarray, arrays: dict) -> Path:
    """out/index.html (module docstring)."""
    n, hop = doc["video"]["steps"], doc["video"]["hop"]
    steps = image_steps(n)
    thumbs = {k: _thumb(frames[k]) for k in steps}
    data = {"steps": steps, "hop": hop, "frames": [_data_uri(thumbs[k]) for k in steps],
            "times": [f"{k * hop:.2f}-{(k + 1) * hop:.2f} s (step {k})" for k in steps],
            "captions": [step_caption(doc, k) for k in steps], "overlays": {}}
    figures = [f'<figure><img id="frame" alt="frame" src="{data["frames"][0]}"><figcaption>frame</figcaption></figure>']
    for task, kind in ((t, d["kind"]) for t, d in doc["tasks"].items() if d["kind"] in SPATIAL):
        layer = layers(kind, arrays[task])
        data["overlays"][task] = [_data_uri(overlay(thumbs[k], kind, layer[k])) for k in steps]
        figures.append(f'<figure><img id="ov-{task}" class="overlay" alt="{task}" src="{data["overlays"][task][0]}">'
                       f'<figcaption>{html.escape(task)}: {html.escape(doc["tasks"][task]["modality"])}'
                       f'</figcaption></figure>')
    v = doc["video"]
    banner = f'<div class="banner">{html.escape(doc["notice"])}</div>' if doc["random_weights"] else ""
    warnings = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in doc["warnings"])
    sampled = "" if len(steps) == n else f' <span class="muted">(pictures for {len(steps)} of the {n} steps)</span>'
    embedded = json.dumps(data).replace("</", "<\\/")     # no "</script>" inside the data
    return _write_html(out, f"avu predict: {v['name']}", f"""<h1>{html.escape(v["name"])}</h1>
<div class="muted">{v["duration"]:.2f} s ({n} steps of {hop:g} s) · run {html.escape(doc["run"]["name"])} ·
<a href="predictions.json">predictions.json</a> (schema {html.escape(doc["schema"])} v{doc["version"]})</div>
{banner}{warnings}
<h2>Frames <span id="when"></span></h2>
<input type="range" id="step" min="0" max="{len(steps) - 1}" value="0" step="1">{sampled}
<div class="frames">{"".join(figures)}</div><div id="caption"></div>
<h2>Timeline <span class="muted">(click to move the frames there)</span></h2>{timeline_svg(doc)}
<h2>Questions and answers</h2>{_qa_html(doc)}
<h2>Provenance</h2><table>{_provenance_rows(doc)}</table>
<script type="application/json" id="page-data">{embedded}</script>
<script>{SCRIPT}</script>
""")


def write_index(out: Path, docs: list[tuple[Path, dict]]) -> Path:
    """out/index.html for a folder of videos: one row per video, linking its page."""
    rows = []
    for folder, doc in docs:
        link = f"{folder.relative_to(out).as_posix()}/index.html"
        events = [e for t in doc["tasks"].values() for e in t["events"]]
        top = sorted(events, key=lambda e: -(e["end"] - e["start"]) * e["score"])[:4]
        what = ", ".join(f'{e["label"]} ({e["task"]}, {e["start"]:g}-{e["end"]:g} s)' for e in top) or "-"
        rows.append(f'<tr><td><a href="{html.escape(link)}">{html.escape(doc["video"]["name"])}</a></td>'
                    f'<td>{doc["video"]["duration"]:.1f} s</td><td>{html.escape(", ".join(doc["tasks"]))}</td>'
                    f'<td>{html.escape(what)}</td></tr>')
    random = any(doc["random_weights"] for _, doc in docs)
    banner = f'<div class="banner">{html.escape(docs[0][1]["notice"])}</div>' if random else ""
    return _write_html(out, "avu predict", f"""<h1>avu predict: {len(docs)} videos</h1>{banner}
<table><tr><th>video</th><th>duration</th><th>tasks</th><th>longest events</th></tr>{"".join(rows)}</table>
""")


def _write_html(out: Path, title: str, body: str) -> Path:
    """out/index.html: `body` in the pages' frame (CSS inline, no icon fetched: works from file://)."""
    path = out / "index.html"
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>{html.escape(title)}</title><style>{CSS}</style></head><body>
{body}</body></html>
""")
    return path
