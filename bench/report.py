"""The benchmark report: a Markdown summary and PNG plots drawn from a results dict.

A results dict is what ``python -m bench`` writes as JSON: ``date``, ``host``,
``command``, ``mode``, ``machine`` (see :mod:`bench.machine`) and ``suites``, each suite's
dict per the contract in :mod:`bench` plus ``status`` (``ok``, ``skipped``, ``failed``, ``missing``),
``elapsed_s`` and, when not ok, ``error``.

Plot data a suite may put in its ``series`` (every key optional; a plot whose data no
suite provides is skipped with a note):

- ``"throughput"``: a list of points ``{"backend": "ort", "precision": "fp32",
  "batch": 8, "value": 123.4, "unit": "images/s"}`` (``device`` optional; ``qps`` or
  ``images_per_s`` accepted for ``value``), one line per backend/precision/device; or
  ``{line label: {batch: value}}`` with the unit in ``series["throughput_unit"]``.
- ``"latency_ms"`` (or ``"latency_us"``): ``{label: [latency of each request, ...]}``,
  one CDF curve per label (e.g. ``"concurrency 1"``); in a committed record each list is
  its count and percentiles (:func:`bench.results_files.summarize_samples`), drawn
  through those points.

The preprocessing bar chart is drawn from the ``preprocess`` suite's rows, one panel per
unit.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from PIL import Image  # noqa: E402

from bench.machine import describe  # noqa: E402
from bench.results_files import is_sample_summary  # noqa: E402

PREPROCESS_SUITE = "preprocess"
PLOT_COLORS = 64  # a palette this size draws these charts unchanged to the eye at a quarter of the bytes
VALUE_KEYS = ("value", "qps", "images_per_s", "throughput")
STANDARD_ROW_KEYS = ("name", "value", "unit")


class SkipPlot(Exception):
    """The data a plot needs is not in the results."""


def fmt(value) -> str:
    """A table cell: 4 significant digits for floats, yes/no for booleans, '-' for none,
    ``key value, ...`` for a dict."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{fmt(k)} {fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def ok_suites(results: dict) -> dict[str, dict]:
    return {name: s for name, s in results.get("suites", {}).items() if s.get("status") == "ok"}


# -- plots -----------------------------------------------------------------------------

def _throughput_points(series: dict, suite_name: str):
    """``(label, batch, value, unit)`` from either form of ``series['throughput']``."""
    data = series.get("throughput") or []
    if isinstance(data, dict):  # {label: {batch: value}}
        for label, by_batch in data.items():
            for batch, value in (by_batch or {}).items():
                yield str(label), batch, value, series.get("throughput_unit", "images/s")
        return
    for point in data:
        if not isinstance(point, dict):
            continue
        value = next((point[k] for k in VALUE_KEYS if isinstance(point.get(k), (int, float))), None)
        label = " ".join(str(point[k]) for k in ("backend", "precision", "device") if point.get(k))
        yield label or suite_name, point.get("batch", point.get("batch_size")), value, point.get("unit", "images/s")


def _throughput_lines(results: dict) -> tuple[dict[str, list[tuple[float, float]]], str]:
    lines: dict[str, list[tuple[float, float]]] = {}
    units = set()
    for name, suite in ok_suites(results).items():
        for label, batch, value, unit in _throughput_points(suite.get("series") or {}, name):
            try:
                batch, value = float(batch), float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(batch) and math.isfinite(value) and batch > 0:
                lines.setdefault(label, []).append((batch, value))
                units.add(unit)
    if not lines:
        raise SkipPlot("no suite gave series['throughput'] points (batch, value)")
    return lines, " or ".join(sorted(units))


def plot_throughput(results: dict, path: Path) -> str:
    lines, unit = _throughput_lines(results)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(lines.items()):
        points.sort()
        ax.plot([b for b, _ in points], [v for _, v in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    batches = sorted({b for points in lines.values() for b, _ in points})
    ax.set_xticks(batches, [fmt(b) if b % 1 else str(int(b)) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel(unit)
    ax.set_title("Throughput against batch size")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


@dataclass(frozen=True)
class CdfCurve:
    """One latency CDF: the sorted samples drawn as steps, or a summary's percentiles
    drawn as points joined by lines."""

    latencies_ms: list[float]
    fractions: list[float]
    count: int
    steps: bool


def _cdf_curve(values, scale: float) -> CdfCurve | None:
    if is_sample_summary(values):
        points = sorted((float(p) / 100, float(v) * scale) for p, v in values["percentiles"].items())
        if not points:
            return None
        return CdfCurve([v for _, v in points], [p for p, _ in points], int(values["count"]), steps=False)
    finite = sorted(float(v) * scale for v in values if isinstance(v, (int, float)) and math.isfinite(v))
    if not finite:
        return None
    return CdfCurve(finite, [(i + 1) / len(finite) for i in range(len(finite))], len(finite), steps=True)


def plot_latency_cdf(results: dict, path: Path) -> str:
    curves: dict[str, CdfCurve] = {}
    for name, suite in ok_suites(results).items():
        series = suite.get("series") or {}
        for key, scale in (("latency_ms", 1.0), ("latency_us", 1e-3)):
            data = series.get(key)
            if isinstance(data, list) or is_sample_summary(data):
                data = {name: data}
            for label, values in (data or {}).items():
                curve = _cdf_curve(values, scale)
                if curve:
                    curves[str(label)] = curve
    if not curves:
        raise SkipPlot("no suite gave series['latency_ms'] (per-request latencies)")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in sorted(curves.items()):
        ax.plot(curve.latencies_ms, curve.fractions, drawstyle="steps-post" if curve.steps else "default",
                label=f"{label} (n={curve.count})")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Serving latency CDF")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_preprocess_bars(results: dict, path: Path) -> str:
    suite = ok_suites(results).get(PREPROCESS_SUITE)
    if suite is None:
        raise SkipPlot(f"no successful '{PREPROCESS_SUITE}' suite in this run")
    by_unit: dict[str, list[tuple[str, float]]] = {}
    for row in suite.get("rows") or []:
        if isinstance(row.get("value"), (int, float)) and math.isfinite(row["value"]):
            by_unit.setdefault(row.get("unit", ""), []).append((str(row.get("name")), float(row["value"])))
    if not by_unit:
        raise SkipPlot(f"the '{PREPROCESS_SUITE}' suite has no numeric rows")
    fig, axes = plt.subplots(len(by_unit), 1, squeeze=False,
                             figsize=(8, 1.2 + sum(0.45 * len(r) + 0.8 for r in by_unit.values())))
    for ax, (unit, rows) in zip(axes[:, 0], sorted(by_unit.items())):
        names = [n for n, _ in rows]
        values = [v for _, v in rows]
        bars = ax.barh(names, values, color="tab:blue")
        ax.bar_label(bars, labels=[fmt(v) for v in values], padding=3)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.margins(x=0.15)
    fig.suptitle(suite.get("title") or "Preprocessing comparison")
    return _save(fig, path)


PLOTS = (
    ("throughput", "Throughput against batch size per backend and precision", plot_throughput),
    ("latency_cdf", "Serving latency CDF", plot_latency_cdf),
    ("preprocess", "Preprocessing comparison", plot_preprocess_bars),
)


def _save(fig, path: Path) -> str:
    """Save as a palette PNG (see :data:`PLOT_COLORS`): the latest run's plots are committed."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=PLOT_COLORS).save(path, optimize=True)
    return str(path)


def make_plots(results: dict, plot_dir: Path, prefix: str) -> tuple[list[dict], list[str]]:
    """Draw every plot the results hold data for into ``plot_dir/<prefix>-<plot>.png``.

    Returns the plots drawn (``name``, ``title``, ``file``) and a note per plot skipped.
    """
    plot_dir.mkdir(parents=True, exist_ok=True)
    drawn, skipped = [], []
    for name, title, draw in PLOTS:
        path = plot_dir / f"{prefix}-{name}.png"
        try:
            draw(results, path)
        except SkipPlot as why:
            plt.close("all")
            skipped.append(f"{title}: skipped, {why}")
            continue
        drawn.append({"name": name, "title": title, "file": str(path)})
    return drawn, skipped


# -- Markdown --------------------------------------------------------------------------

def _ratio_rows(results: dict) -> list[list]:
    rows = []
    for name, suite in ok_suites(results).items():
        for r in suite.get("ratios") or []:
            rows.append([name, r.get("name"), r.get("value"), r.get("goal") or "-", r.get("met")])
    return rows


def _suite_section(name: str, suite: dict) -> list[str]:
    lines = [f"## {name}: {suite.get('title') or ''}".rstrip(": "), ""]
    status = suite.get("status", "ok")
    elapsed = suite.get("elapsed_s")
    lines.append(f"Status: **{status}**" + (f" ({elapsed:.1f} s)" if isinstance(elapsed, (int, float)) else ""))
    lines.append("")
    if status != "ok":
        lines += [f"Reason: {fmt(suite.get('error'))}", ""]
        return lines
    rows = suite.get("rows") or []
    if rows:
        extra = []
        for row in rows:
            extra += [k for k in row if k not in STANDARD_ROW_KEYS and k != "key" and k not in extra]
        header = list(STANDARD_ROW_KEYS) + extra
        lines += _table(header, [[row.get(k) for k in header] for row in rows]) + [""]
    ratios = suite.get("ratios") or []
    if ratios:
        lines += _table(["ratio", "value", "goal", "met"],
                        [[r.get("name"), r.get("value"), r.get("goal") or "-", r.get("met")] for r in ratios])
        lines.append("")
    for note in suite.get("notes") or []:
        lines.append(f"- {note}")
    if suite.get("notes"):
        lines.append("")
    return lines


def render_markdown(results: dict, plots_relative_to: Path | None = None) -> str:
    """The summary: run header, every goal ratio in one table, one section per suite, plots."""
    machine = results.get("machine") or {}
    lines = [f"# Benchmark results {results.get('date', '')} on {results.get('host', '')}", ""]
    lines.append(f"- Machine: {describe(machine)}")
    if machine.get("cpu_simd"):
        lines.append(f"- CPU SIMD: {', '.join(machine['cpu_simd'])}")
    packages = machine.get("packages") or {}
    if packages:
        lines.append("- Packages: " + ", ".join(f"{k} {v}" for k, v in packages.items()))
    lines.append(f"- Command: `{results.get('command', '')}` (mode {results.get('mode', '')}"
                 + (", smoke" if results.get("smoke") else "") + ")")
    if isinstance(results.get("elapsed_s"), (int, float)):
        lines.append(f"- Duration: {results['elapsed_s']:.0f} s")
    lines.append("")
    statuses = {name: s.get("status") for name, s in results.get("suites", {}).items()}
    not_ok = {n: st for n, st in statuses.items() if st != "ok"}
    if not_ok:
        lines += ["Suites that did not run: " + ", ".join(f"{n} ({st})" for n, st in not_ok.items()), ""]
    ratio_rows = _ratio_rows(results)
    lines += ["## Ratios against goals", ""]
    lines += (_table(["suite", "ratio", "value", "goal", "met"], ratio_rows) if ratio_rows
              else ["No suite reported a ratio."]) + [""]
    for name, suite in results.get("suites", {}).items():
        lines += _suite_section(name, suite)
    lines += ["## Plots", ""]
    for plot in results.get("plots") or []:
        file = Path(plot["file"])
        if plots_relative_to is not None:
            file = Path(_relative(file, plots_relative_to))
        lines += [f"### {plot['title']}", "", f"![{plot['title']}]({file.as_posix()})", ""]
    for note in results.get("plots_skipped") or []:
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
