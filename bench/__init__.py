"""Benchmarks: each suite measures the engine and its baseline side by side in one run.

A suite is a module ``bench/suite_<name>.py`` with ``run(quick: bool) -> dict``:

    {
      "suite": "<name>",
      "title": "one line saying what is compared",
      "rows": [{"name": str, "value": float, "unit": str, ...extra columns}],
      "ratios": [{"name": str, "value": float, "goal": "<= 0.75" | ">= 0.95" | None,
                  "met": bool | None,
                  "readme": True}],     # optional: one of the suite's one or two key ratios,
                                        # shown in the README (at most 15 in all; bench.update_readme)
      "notes": [str, ...],            # caveats, skipped baselines with their reason
      "series": {...},                # raw data for plots (optional)
    }

A suite that cannot run on this machine (the GPU suite without a GPU) raises
:class:`SuiteSkipped` with the reason; it is reported as skipped, not as a failure.

``python -m bench`` runs the suites, adds the machine (CPU model, cores, GPU) and the
date, and writes ``bench/results/<date>-<host>.json`` plus a Markdown summary (see
:mod:`bench.results_files`). A suite's parts may collect into one :class:`Findings`.
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The small test models and the server launcher are test fixtures (tests/support/), not
# part of the installed engine; the benchmarks measure with the same ones.
_SUPPORT = str(Path(__file__).resolve().parents[1] / "tests" / "support")
if _SUPPORT not in sys.path:
    sys.path.append(_SUPPORT)

SUITES = ("preprocess", "pipeline", "api", "models", "openvino", "broker",
          "build", "serve", "kserve", "fleet", "gpu", "ray", "shards")


class SuiteSkipped(Exception):
    """Raised by a suite's ``run`` when this machine lacks what it measures."""


@dataclass
class Findings:
    """What the parts of a suite report, in the order they report it."""

    rows: list = field(default_factory=list)
    ratios: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    series: dict = field(default_factory=dict)

    def result(self, suite: str, title: str) -> dict:
        """The suite's return value (the contract above; ``series`` only when a part gave one)."""
        result = {"suite": suite, "title": title, "rows": self.rows, "ratios": self.ratios, "notes": self.notes}
        return result | ({"series": self.series} if self.series else {})
