"""`avu report`: our scores beside the paper's (AV-Unified, arXiv 2603.06530), Tables I to VI.

Reads only run directories (trainer/rundir.py) and, for figures, feature stores: no model, no
GPU. Each metric row shows the paper's number, then per run ours and the difference (ours x 100
minus the paper's), and the chance level where the eval JSON gives one. Tables I-V hold every
run that trained or evaluated one of the table's tasks; Table VI (joint versus single-task
training) appears when some run has joint = false: the single-task runs are merged into one
"w/o jt" column where their tasks do not overlap (more columns where they do, or where one has
random-weight features and another not), and every joint run with a number in those rows gets
a "joint" column. A run whose features came from random-weight encoders (run.json or
any of its eval JSONs says so) carries RANDOM_MARK in every table and output format.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table as RichTable
from rich.text import Text

from trainer.plots import write_plots
from trainer.rundir import RANDOM_MARK, Result, Run, RunDirError, load_evals, load_run
from trainer.tasks import BENCHMARKS

PAPER = "AV-Unified (arXiv 2603.06530)"
FORMATS = ("rich", "markdown", "csv", "json")
WOJT, JOINT = "w/o jt", "joint"
JOINT_ORDER = 6        # Table VI comes after the tables of order 1-5 (AV-Unified's), before later ones


# ----------------------------------------------------------------------------- the paper's tables
@dataclass(frozen=True)
class Row:
    """One metric of a paper table, of one task (a Benchmark's rows, trainer/tasks/spec.py)."""
    label: str
    task: str
    key: str
    paper: dict[str, float | None]   # None: the paper's number is not known (shown as NOT_VERIFIED_MARK)
    supervision: str | None = None
    note: str = ""        # printed under any table that shows the row
    optional: bool = False   # shown only where some column has a number for it


@dataclass(frozen=True)
class Spec:
    id: str
    title: str
    digits: int           # decimals, as the paper prints them
    rows: tuple[Row, ...]
    source: str = ""      # whose numbers the paper column holds ("": AV-Unified's)
    verified: bool = True
    order: int = 0


NOT_VERIFIED_MARK = "–"   # a paper number nobody has read from the paper


def _task_rows(rows, task: str) -> tuple[Row, ...]:
    return tuple(Row(r.label, task, r.key, r.paper, r.supervision, r.note, r.optional) for r in rows)


def paper_tables() -> tuple[tuple[Spec, ...], Spec]:
    """The benchmarks' tables (Tables I-V, the dense ones after VI) and Table VI, made from the
    benchmarks' rows (BENCHMARKS order within a table)."""
    tables = tuple(
        Spec(t.id, t.title, t.digits,
             sum((_task_rows(b.rows, name) for name, b in BENCHMARKS.items() if b.table == t), ()),
             t.source, t.verified, t.order)
        for t in sorted({b.table for b in BENCHMARKS.values()}, key=lambda t: t.order))
    joint = Spec("VI", "joint vs single-task training", 2,
                 sum((_task_rows(b.joint_rows, name) for name, b in BENCHMARKS.items()), ()), order=JOINT_ORDER)
    return tables, joint


def _supervision(run: Run, task: str) -> str | None:
    """The run's supervision of a task that can be trained in several ways (AVE), else None."""
    return BENCHMARKS[task].supervision_of(run.ave_supervision)


# ----------------------------------------------------------------------------- building
@dataclass(frozen=True)
class Column:
    label: str
    role: str                   # "" in Tables I-V, WOJT or JOINT in Table VI
    results: tuple[Result, ...]

    @property
    def random_weights(self) -> bool:
        return any(r.random_weights for r in self.results)


@dataclass(frozen=True)
class Cell:
    run: str | None             # label of the run that gave the number; None: no number
    ours: float | None          # percent
    paper: float | None         # None: not known
    chance: float | None        # percent
    n: int | None

    @property
    def diff(self) -> float | None:
        return None if self.ours is None or self.paper is None else self.ours - self.paper


@dataclass(frozen=True)
class Table:
    spec: Spec
    split: str
    columns: tuple[Column, ...]
    lines: tuple[tuple[Row, tuple[Cell, ...]], ...]   # one cell per column

    @property
    def notes(self) -> list[str]:
        if self.spec.verified:
            notes = [f"paper = {self.spec.source or PAPER}" + ("" if self.spec.source else f", Table {self.spec.id}")]
        else:
            notes = [f"paper = {self.spec.source or PAPER}: its numbers are NOT VERIFIED (nobody has read them "
                     f"from the paper yet), shown as {NOT_VERIFIED_MARK}, never guessed"]
        random = [r.label for c in self.columns for r in c.results if r.random_weights]
        if random:
            notes.append(f"{RANDOM_MARK}: {', '.join(random)} — features from random-weight "
                         "encoders; these numbers say nothing about the pretrained model.")
        several = len({row.task for row, _ in self.lines}) > 1
        ns = {f"{cell.run} {row.task}" if several else cell.run: cell.n
              for row, cells in self.lines for cell in cells if cell.n}
        if ns:
            notes.append("n: " + ", ".join(f"{who} {n}" for who, n in ns.items()))
        return notes + list(dict.fromkeys(row.note for row, _ in self.lines if row.note))   # a note once


def _cell(column: Column, row: Row) -> Cell:
    paper = row.paper[column.role]
    for res in column.results:
        ev = res.evals.get(row.task)
        if ev is None or row.key not in ev.metrics:
            continue
        if row.supervision and _supervision(res.run, row.task) != row.supervision:
            continue
        chance = ev.chance.get(row.key)
        return Cell(res.label, 100 * ev.metrics[row.key], paper,
                    None if chance is None else 100 * chance, ev.n or None)
    return Cell(None, None, paper, None, None)


def _table(spec: Spec, split: str, columns: list[Column], rows) -> Table:
    lines = ((row, tuple(_cell(c, row) for c in columns)) for row in rows)
    return Table(spec, split, tuple(columns),
                 tuple((row, cells) for row, cells in lines
                       if not row.optional or any(c.ours is not None for c in cells)))


def _slots(results: list[Result]) -> list[list[Result]]:
    """Single-task runs merged into as few columns as their tasks (AVE: and supervision) and
    feature kinds allow, first fit."""
    slots: list[list[Result]] = []
    for res in results:
        tasks = {(t, _supervision(res.run, t)) for t in BENCHMARKS if res.has(t)}
        for slot in slots:
            taken = {(t, _supervision(r.run, t)) for r in slot for t in BENCHMARKS if r.has(t)}
            # a random-weight run never shares a column (and its marker) with a pretrained one
            if not tasks & taken and slot[0].random_weights == res.random_weights:
                slot.append(res)
                break
        else:
            slots.append([res])
    return slots


def build_tables(results: list[Result], split: str) -> list[Table]:
    """Tables I-V with every run that has one of their tasks, then Table VI if some run
    was trained on its own task(s)."""
    tables = []
    paper, joint = paper_tables()
    for spec in paper:
        cols = [Column(r.label, "", (r,)) for r in results if any(r.has(row.task) for row in spec.rows)]
        if cols:
            tables.append(_table(spec, split, cols, spec.rows))
    later = [t for t in tables if t.spec.order > JOINT_ORDER]     # the dense tables print after Table VI
    tables = [t for t in tables if t.spec.order <= JOINT_ORDER]
    single = [r for r in results if not r.run.joint]
    if single:
        slots = _slots(single)
        cols = [Column(WOJT if len(slots) == 1 else f"{WOJT} #{i + 1}", WOJT, tuple(s))
                for i, s in enumerate(slots)]
        rows = [row for row in joint.rows if any(
            r.has(row.task) and row.supervision in (None, _supervision(r.run, row.task)) for r in single)]
        # joint runs that have a number for one of those rows
        cols += [c for c in (Column(r.label, JOINT, (r,)) for r in results if r.run.joint)
                 if any(_cell(c, row).ours is not None for row in rows)]
        if rows:
            tables.append(_table(joint, split, cols, rows))
    return tables + later


def load_results(paths: list[Path], split: str) -> tuple[list[Result], list[str], list[str]]:
    """Results, errors (runs that cannot be reported) and warnings (tasks without eval)."""
    results, errors, warnings = [], [], []
    for path in paths:
        try:
            run = load_run(path)
            evals = load_evals(run, split)
        except RunDirError as err:
            errors.append(str(err))
            continue
        label = run.name
        if label in {r.label for r in results}:
            label = f"{run.name} ({path})"
        for task in run.tasks:
            if task not in evals:
                warnings.append(f"run {run.name!r}: trained on {task} but has no "
                                f"eval/{split}/{task}.json (avu eval {run.path})")
        for task in evals:
            if task not in BENCHMARKS:
                warnings.append(f"{evals[task].path}: unknown task {task!r}, in no table")
        results.append(Result(run, label, {t: e for t, e in evals.items() if t in BENCHMARKS}))
    return results, errors, warnings


# ----------------------------------------------------------------------------- rendering
def _num(x: float | None, digits: int, sign: bool = False) -> str:
    """x to `digits` decimals; "—" where there is no number."""
    if x is None:
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _paper(x: float | None, digits: int, sign: bool = False) -> str:
    """A paper number; NOT_VERIFIED_MARK where nobody has read it from the paper."""
    return NOT_VERIFIED_MARK if x is None else _num(x, digits, sign)


def _grid(table: Table) -> tuple[list[tuple[list[str], str]], list[list[tuple[str, str, float | None]]]]:
    """Header cells (lines of text, kind) and rows of (text, kind, value) shared by the rich and
    markdown renderers. Kinds: label, paper, run, random, diff, gain, chance."""
    d, cols = table.spec.digits, table.columns
    head: list[tuple[list[str], str]] = [(["metric"], "label")]
    last_role = None
    for c in cols:
        if c.role != last_role:
            head.append(([f"paper {c.role}".strip()], "paper"))
            last_role = c.role
        tags = [", ".join(r.label for r in c.results)] if c.role == WOJT else []
        if c.role == "" and not c.results[0].run.joint:
            tags.append("single-task")
        head += [([c.label, *tags, *([RANDOM_MARK] if c.random_weights else [])],
                  "random" if c.random_weights else "run"), (["Δ"], "diff")]
    roles = [c.role for c in cols]
    gain = roles.count(WOJT) == 1 and roles.count(JOINT) == 1
    if gain:
        head += [(["joint − w/o jt"], "gain"), (["paper joint − w/o jt"], "paper")]
    show_chance = any(cell.chance is not None for _, cells in table.lines for cell in cells)
    if show_chance:
        head.append((["chance"], "chance"))
    rows = []
    for row, cells in table.lines:
        out = [(row.label, "label", None)]
        last_role = None
        for c, cell in zip(cols, cells):
            if c.role != last_role:
                out.append((_paper(row.paper[c.role], d), "paper", None))
                last_role = c.role
            out += [(_num(cell.ours, d), "run", None), (_num(cell.diff, d, True), "diff", cell.diff)]
        if gain:
            wojt, joint = cells[roles.index(WOJT)], cells[roles.index(JOINT)]
            g = None if None in (wojt.ours, joint.ours) else joint.ours - wojt.ours
            pj, pw = row.paper[JOINT], row.paper[WOJT]
            out += [(_num(g, d, True), "gain", g),
                    (_paper(None if None in (pj, pw) else pj - pw, d, True), "paper", None)]
        if show_chance:
            chances = dict.fromkeys(_num(c.chance, d) for c in cells if c.chance is not None)
            out.append((" / ".join(chances) or "—", "chance", None))
        rows.append(out)
    return head, rows


def _title(table: Table) -> str:
    return f"Table {table.spec.id}: {table.spec.title} ({table.split})"


def _rich_table(table: Table) -> RichTable:
    head, rows = _grid(table)
    t = RichTable(title=Text(_title(table), style="bold"), caption=Text("\n".join(table.notes)),
                  caption_justify="left")
    for lines, kind in head:
        style = {"random": "bold yellow", "paper": "cyan", "label": "bold"}.get(kind, "")
        t.add_column(Text("\n".join(lines), style=style), justify="left" if kind == "label" else "right",
                     style="cyan" if kind == "paper" else None)
    for row in rows:
        t.add_row(*[Text(text, style="" if v is None else ("green" if v >= 0 else "red"))
                    for text, _, v in row])
    return t


def _supervisions(r: Result) -> str:
    """The supervision of each task of the run that can be trained in several ways."""
    return ", ".join(f"{t} {s}" for t in BENCHMARKS if r.has(t) and (s := _supervision(r.run, t))) or "—"


def _runs_table(results: list[Result], split: str) -> RichTable:
    t = RichTable(title=f"avu report: {len(results)} run(s), split {split}")
    for name in ("run", "path", "training", "supervision", "evaluated", "features"):
        t.add_column(name)
    for r in results:
        t.add_row(*map(Text, (r.label, str(r.run.path), JOINT if r.run.joint else "single-task",
                              _supervisions(r), ", ".join(r.evals) or "—")),
                  Text(RANDOM_MARK, style="bold yellow") if r.random_weights else Text("pretrained"))
    return t


def to_markdown(tables: list[Table], results: list[Result]) -> str:
    out = []
    for r in results:
        if r.random_weights:
            out.append(f"> **{RANDOM_MARK}**: run `{r.label}` used random-weight encoders.\n")
    for table in tables:
        head, rows = _grid(table)
        out.append(f"### {_title(table)}\n")
        out.append("| " + " | ".join(" ".join(lines) for lines, _ in head) + " |")
        out.append("|" + "|".join(":---" if kind == "label" else "---:" for _, kind in head) + "|")
        out += ["| " + " | ".join(text for text, _, _ in row) + " |" for row in rows]
        out += [""] + [f"> {note}" for note in table.notes] + [""]
    return "\n".join(out)


def _records(tables: list[Table]):
    for table in tables:
        for row, cells in table.lines:
            for col, cell in zip(table.columns, cells):
                yield table, row, col, cell


def to_csv(tables: list[Table]) -> str:
    """Long format: one line per table, metric and column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "metric", "task", "key", "column", "role", "run", "random_weights", "marker",
                "split", "n", "ours", "paper", "diff", "chance"])
    fmt = lambda x: "" if x is None else f"{x:.4f}"  # noqa: E731
    for t, row, col, cell in _records(tables):
        w.writerow([t.spec.id, row.label, row.task, row.key, col.label, col.role or "", cell.run or "",
                    col.random_weights, RANDOM_MARK if col.random_weights else "", t.split,
                    cell.n or "", fmt(cell.ours), fmt(cell.paper), fmt(cell.diff), fmt(cell.chance)])
    return buf.getvalue()


def to_json(tables: list[Table], results: list[Result], split: str, warnings: list[str]) -> str:
    runs = [{"name": r.label, "path": str(r.run.path), "tasks": list(r.run.tasks), "joint": r.run.joint,
             "ave_supervision": r.run.ave_supervision, "random_weights": r.random_weights,
             "marker": RANDOM_MARK if r.random_weights else None,
             "eval": {t: {"n": e.n, "metrics": {k: 100 * v for k, v in e.metrics.items()},
                          "chance": {k: 100 * v for k, v in e.chance.items()},
                          "per_class": {k: 100 * v for k, v in e.per_class.items()}}
                      for t, e in r.evals.items()}} for r in results]
    out_tables = [{
        "id": t.spec.id, "title": t.spec.title, "split": t.split, "notes": t.notes,
        "columns": [{"label": c.label, "role": c.role, "runs": [r.label for r in c.results],
                     "random_weights": c.random_weights,
                     "marker": RANDOM_MARK if c.random_weights else None} for c in t.columns],
        "rows": [{"metric": row.label, "task": row.task, "key": row.key, "paper": row.paper,
                  "cells": [{"column": c.label, "run": cell.run, "ours": cell.ours, "paper": cell.paper,
                             "diff": cell.diff, "chance": cell.chance, "n": cell.n}
                            for c, cell in zip(t.columns, cells)]} for row, cells in t.lines],
    } for t in tables]
    return json.dumps({"split": split, "paper": PAPER, "scale": "percent (fractions x 100)",
                       "runs": runs, "tables": out_tables, "warnings": warnings}, indent=2)


# ----------------------------------------------------------------------------- the command
def report(runs: list[Path], split: str = "test", fmt: str = "rich", plots: Path | None = None,
           console: Console | None = None, err_console: Console | None = None) -> int:
    """Print Tables I-VI for the run directories given and optionally write figures to `plots`.

    Tables go to `console` (default stdout), errors, warnings and progress to `err_console`
    (default stderr), so --format json|csv output stays parseable. Returns the exit code:
    0 done, 1 a run has no metrics (or is not a run directory), 2 bad arguments.
    """
    console = console or Console()
    err = err_console or Console(stderr=True)
    if fmt not in FORMATS:
        err.print(f"[bold red]error:[/] unknown format {escape(repr(fmt))}; use one of {', '.join(FORMATS)}")
        return 2
    if not runs:
        err.print("[bold red]error:[/] no run directories given")
        return 2
    results, errors, warnings = load_results(list(runs), split)
    for e in errors:
        err.print(f"[bold red]error:[/] {escape(e)}", highlight=False)
    if errors:
        return 1
    tables = build_tables(results, split)
    for w in warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    if fmt == "rich":
        if any(r.random_weights for r in results):
            console.print(Panel(f"[bold]{RANDOM_MARK}[/] in run(s) "
                                f"{escape(', '.join(r.label for r in results if r.random_weights))}: their "
                                "numbers say nothing about pretrained models.", style="bold yellow",
                                expand=False))
        console.print(_runs_table(results, split))
        for t in tables:
            console.print(_rich_table(t))
    else:
        text = {"markdown": lambda: to_markdown(tables, results), "csv": lambda: to_csv(tables),
                "json": lambda: to_json(tables, results, split, warnings)}[fmt]()
        console.out(text, highlight=False)
    if plots is not None:
        try:
            written, notes = write_plots(results, split, Path(plots))
        except OSError as e:  # the folder cannot be made or written
            err.print(f"[bold red]error:[/] --plots {escape(str(plots))}: {escape(str(e))}", highlight=False)
            return 1
        for note in notes:
            err.print(f"[yellow]plots:[/] {escape(note)}", highlight=False)
        err.print(f"wrote {len(written)} figure(s) to {escape(str(plots))}", highlight=False)
    return 0
