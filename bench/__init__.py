"""Benchmarks: each suite measures the engine and its baseline side by side in one run.

A suite is a module ``bench/suite_<name>.py`` with ``run(quick: bool) -> dict``:

    {
      "suite": "<name>",
      "title": "one line saying what is compared",
      "rows": [{"name": str, "value": float, "unit": str, ...extra columns}],
      "ratios": [{"name": str, "value": float, "goal": "<= 0.75" | ">= 0.95" | None,
                  "met": bool | None}],
      "notes": [str, ...],            # caveats, skipped baselines with their reason
      "series": {...},                # raw data for plots (optional)
    }

A suite that cannot run on this machine (the GPU suite without a GPU) raises
:class:`SuiteSkipped` with the reason; it is reported as skipped, not as a failure.

``python -m bench`` runs the suites, adds the machine (CPU model, cores, GPU) and the
date, and writes ``bench/results/<date>-<host>.json`` plus a Markdown summary.
"""

SUITES = ("preprocess", "pipeline", "build", "serve", "gpu")


class SuiteSkipped(Exception):
    """Raised by a suite's ``run`` when this machine lacks what it measures."""
