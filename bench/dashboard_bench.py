"""Dashboard figures from a real Chromium: an epoch reported by a worker until it is on the chart
(target ≤ 0.5 s), and a 200-epoch × 20-layer run page until its charts are drawn and the epoch slider
answers (target ≤ 1 s). Runs the two browser tests that measure them and prints what they recorded.

    .venv/bin/python bench/dashboard_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMINGS = ROOT / "test-artifacts" / "timings.jsonl"
TESTS = ["tests/browser/test_dashboard.py::test_run_page_gains_points_live_and_keeps_the_zoom",
         "tests/browser/test_dashboard.py::test_a_large_run_page_draws_its_charts_and_answers_the_slider"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    TIMINGS.unlink(missing_ok=True)
    for _ in range(args.repeat):
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, check=True)
    samples: dict[str, list[float]] = {}
    for line in TIMINGS.read_text().splitlines():
        record = json.loads(line)
        samples.setdefault(record["name"], []).extend(record["seconds"])
    targets = {"live_epoch_to_chart_s": 0.5, "large_run_interactive_s": 1.0}
    print(f"{'figure':<26} {'n':>3} {'min s':>7} {'median s':>9} {'max s':>7} {'target s':>9}")
    for name, values in samples.items():
        print(f"{name:<26} {len(values):>3} {min(values):>7.3f} {statistics.median(values):>9.3f} "
              f"{max(values):>7.3f} {targets.get(name, float('nan')):>9.1f}")


if __name__ == "__main__":
    main()
