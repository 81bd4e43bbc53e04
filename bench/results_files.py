"""The files one bench run leaves, sized so that the committed ones stay small.

In the results folder (``bench/results/`` by default):

- ``<stem>.json``, committed: the compact record of the run. It holds everything a
  reader needs (date, host, command, mode, machine, and every suite's rows, ratios with
  their goals, notes and plot series) except raw per-sample arrays: each series named
  in :data:`SAMPLE_SERIES` (per-request latencies, thousands of numbers per curve) is
  replaced by its sample count and :data:`PERCENTILES`, which is what a reader or a
  latency CDF needs of it.
- ``<stem>.md`` and ``plots/<stem>-<plot>.png``: the summary and plots of the latest run
  only; writing a run removes those of earlier runs (any run's can be drawn again from
  its JSON with ``python -m bench.render``).
- ``raw/<stem>.json``, git-ignored: the run exactly as measured, samples included.

JSON is written one row, ratio, note or series entry per line: readable, small diffs,
and without the indentation of deeper levels that would cost a sixth of the size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RAW_DIR = "raw"
PLOT_DIR = "plots"
SAMPLE_SERIES = ("latency_ms", "latency_us")
PERCENTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100)
SIGNIFICANT_DIGITS = 4  # of a summarized sample: a latency to 0.1% is finer than its run-to-run spread
ONE_LINE_DEPTH = 4  # results > suites > suite > rows > one row per line
LINE_WIDTH = 100  # a shallower container this short stays on one line too


@dataclass(frozen=True)
class Rendering:
    """A run's Markdown summary and the plots drawn for it (``file`` relative to the
    summary's folder), with a note for each plot its data did not allow."""

    summary: Path
    plots: list[dict]
    plots_skipped: list[str]


@dataclass(frozen=True)
class RunFiles:
    """Where one run's files went."""

    record: Path
    raw: Path
    rendering: Rendering


def jsonable(value):
    """json.dumps fallback for what suites naturally return: numpy scalars and arrays, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def summarize_samples(samples) -> dict:
    """``{"count": n, "percentiles": {"50": value, ...}}`` of a list of samples."""
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return {"count": 0, "percentiles": {}}
    points = np.percentile(values, PERCENTILES)
    return {"count": int(values.size),
            "percentiles": {f"{p:g}": float(f"{v:.{SIGNIFICANT_DIGITS}g}") for p, v in zip(PERCENTILES, points)}}


def is_sample_summary(value) -> bool:
    return isinstance(value, dict) and set(value) == {"count", "percentiles"}


def _compact_series(series: dict) -> dict:
    compact = dict(series)
    for key in SAMPLE_SERIES:
        data = series.get(key)
        if isinstance(data, dict):
            compact[key] = {label: values if is_sample_summary(values) else summarize_samples(values)
                            for label, values in data.items()}
        elif isinstance(data, (list, np.ndarray)):
            compact[key] = summarize_samples(data)
    return compact


def compact(results: dict) -> dict:
    """``results`` with every per-sample series summarized; nothing else changes."""
    suites = {name: {**suite, "series": _compact_series(suite["series"])} if isinstance(suite.get("series"), dict)
              else suite for name, suite in results.get("suites", {}).items()}
    return {**results, "suites": suites}


def to_json(value, depth: int = 0) -> str:
    """JSON text that breaks containers into one item per line down to :data:`ONE_LINE_DEPTH`
    levels and writes deeper ones, and any that fits in :data:`LINE_WIDTH`, on one line."""
    flat = json.dumps(value, default=jsonable)
    if depth >= ONE_LINE_DEPTH or depth + len(flat) <= LINE_WIDTH or not isinstance(value, (dict, list, tuple)):
        return flat
    pad = " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(str(k))}: {to_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    items = [pad + to_json(v, depth + 1) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"


def render(results: dict, out: Path, stem: str) -> Rendering:
    """Draw the plots into ``out/plots/`` and write ``out/<stem>.md`` from ``results``
    (a raw file or a compact record)."""
    from bench.report import make_plots, render_markdown  # matplotlib: slow to import

    out.mkdir(parents=True, exist_ok=True)
    plots, skipped = make_plots(results, out / PLOT_DIR, stem)
    for plot in plots:
        plot["file"] = Path(plot["file"]).resolve().relative_to(out.resolve()).as_posix()
    summary = out / f"{stem}.md"
    summary.write_text(render_markdown({**results, "plots": plots, "plots_skipped": skipped}))
    return Rendering(summary, plots, skipped)


def remove_earlier_renderings(out: Path, stem: str) -> list[Path]:
    """Delete the plots and the summaries of runs other than ``stem`` in ``out`` (a summary
    counts as a run's when a ``.json`` record of the same name sits beside it, so hand-written
    notes stay); returns what was deleted."""
    earlier = [p for p in sorted((out / PLOT_DIR).glob("*.png")) if not p.name.startswith(f"{stem}-")]
    earlier += [p for p in sorted(out.glob("*.md")) if p.stem != stem and p.with_suffix(".json").is_file()]
    for path in earlier:
        path.unlink()
    return earlier


def write_run(results: dict, out: Path, stem: str) -> RunFiles:
    """Write one run's raw file, compact record, summary and plots; remove earlier runs' renderings."""
    raw = out / RAW_DIR / f"{stem}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, default=jsonable) + "\n")
    rendering = render(results, out, stem)
    record = out / f"{stem}.json"
    record.write_text(to_json({**compact(results), "plots": rendering.plots,
                               "plots_skipped": rendering.plots_skipped}) + "\n")
    remove_earlier_renderings(out, stem)
    return RunFiles(record, raw, rendering)
