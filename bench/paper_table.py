"""The paper table on real MNIST: each row is a preset, run over seeds; mean ± std of the final test error.

    .venv/bin/python bench/paper_table.py --data-dir /work/shared/data/mnist [--rows lenet300-99,...]
        [--seeds 0 1 2 3 4] [--epochs N] [--out bench/results/paper_table_v4.jsonl] [--merge FILE ...]
        [--table-only]

Each row's config is exactly a preset of `prunescope/presets/` (its model, epochs and schedule; `--epochs`
rescales the epoch-valued schedule fields, for quick looks only). Runs go one at a time on one thread;
each finished (row, seed) is appended to --out as one JSON line, so a partial run keeps its results and a
re-run skips what is there. "error %" is the final epoch's test error (never the best epoch: that would
be picked on the test set). A run the guards stop (`TrainingDiverged`) is recorded as failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunescope.contract import EpochRecord
from prunescope.presets import load_presets
from worker.engine.guards import TrainingDiverged
from worker.engine.training import run_training

# (row id, preset, what the literature reports, target: mean error % at most)
ROWS: list[tuple[str, str, str, float | None]] = [
    ("lenet300-dense", "dense", "≈ 1.6 % (Han 2015: 1.64 %)", None),
    ("lenet300-92", "han2015", "Han 2015: 1.59 % at 91.7 %", 1.55),
    ("lenet300-92-gmp", "gmp_92", "Han 2015: 1.59 % at 91.7 %", 1.55),
    ("lenet300-98.2", "dns", "DNS: 1.99 % at 98.2 %", 1.80),
    ("lenet300-98.2-gmp", "gmp_98_2", "DNS: 1.99 % at 98.2 %", 1.80),
    ("lenet300-98.5", "gmp_98_5", "Sparse VD: 1.92 % at 98.5 %", 1.90),
    ("lenet300-99-gmp", "gmp_99", "sparse momentum: 2.36 % at 99 %", 2.00),
    ("lenet300-99-rigl", "rigl_99", "sparse momentum: 2.36 % at 99 %", 2.00),
    ("lenet300-99-set", "set_99", "sparse momentum: 2.36 % at 99 %", 2.00),
    ("lenet5-99", "lenet5_99", "sparse momentum: 0.83 % at 99 %", 0.80),
    ("lenet5-99.6", "lenet5_99_6", "Sparse VD: 0.75 % at 99.6 %", 0.80),
]


def row_config(preset: dict, epochs: int | None) -> dict:
    """The preset on full MNIST (its other dataset fields, such as augment, kept).

    With `epochs`, epoch-valued schedule fields scale along.
    """
    config = copy.deepcopy(preset)
    config["dataset"] = {**config.get("dataset", {}), "name": "mnist", "limit": None}  # keeps e.g. augment
    if epochs is None or epochs == config["training"]["epochs"]:
        return config
    scale = epochs / config["training"]["epochs"]
    config["training"]["epochs"] = epochs
    pruning = config.get("pruning")
    if pruning is not None:
        for block in (pruning["schedule"], pruning["recovery"]):
            for key in ("start_epoch", "end_epoch"):
                if block.get(key):  # 0 (before the first step) and None stay as they are
                    block[key] = min(epochs, max(1, round(block[key] * scale)))
    return config


def print_table(results: list[dict]) -> None:
    print(f"{'row':18} {'preset':12} {'seeds':>5} {'error % (mean ± std)':>21} {'sparsity %':>10} {'epochs':>6} "
          f"{'target':>7}  per seed / literature")
    for row_id, preset, paper, target in ROWS:
        runs = sorted((r for r in results if r["row"] == row_id), key=lambda r: r["seed"])
        if not runs:
            continue
        done = [r for r in runs if r["summary"] is not None]
        errors = [100 * (1 - r["summary"]["final_test_acc"]) for r in done]
        mean = statistics.mean(errors) if errors else float("nan")
        std = statistics.stdev(errors) if len(errors) > 1 else 0.0
        sparsity = 100 * statistics.mean(r["summary"]["final_sparsity"] for r in done) if done else float("nan")
        verdict = "" if target is None else (f"≤ {target:.2f} " + ("met" if mean <= target else "missed"))
        failed = len(runs) - len(done)
        per_seed = " / ".join(f"{e:.2f}" for e in errors) + (f" ({failed} failed)" if failed else "")
        print(f"{row_id:18} {preset:12} {len(runs):>5} {mean:>13.2f} ± {std:<5.2f} {sparsity:>10.2f} "
              f"{runs[0]['epochs']:>6} {verdict:>12}  {per_seed}; {paper}")


def run_row(row_id: str, preset_name: str, paper: str, config: dict, seed: int, data_dir: Path) -> dict:
    config = copy.deepcopy(config)
    config["training"]["seed"] = seed
    epochs = config["training"]["epochs"]
    started = time.time()

    def progress(record: EpochRecord, masks: dict) -> None:
        print(f"[{row_id} seed {seed}] epoch {record.epoch}/{epochs} test_acc={record.test_acc:.4f} "
              f"sparsity={record.sparsity:.4f} loss={record.train_loss:.4f} elapsed={time.time() - started:.0f}s",
              file=sys.stderr, flush=True)

    try:
        summary, failure = run_training(config, data_dir=data_dir, device="cpu",
                                        on_epoch=progress).model_dump(mode="json"), None
    except TrainingDiverged as exc:
        summary, failure = None, str(exc)
    return {"row": row_id, "preset": preset_name, "seed": seed, "paper": paper, "epochs": epochs,
            "config": config, "summary": summary, "failed": failure}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/mnist"))
    parser.add_argument("--rows", default="", help="comma-separated row ids (default: all, in order)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="override the presets' epochs (quick looks)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/paper_table_v4.jsonl"))
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="more result files (other --out of runs side by side) to show in the table, "
                             "for the seeds --out has no run of (same config only)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one row at a time on one core
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.table_only:
        presets = load_presets()
        wanted = [r for r in ROWS if not args.rows or r[0] in args.rows.split(",")]
        unknown = sorted({preset for _, preset, _, _ in wanted} - set(presets))
        if unknown:
            raise SystemExit(f"no preset named {', '.join(unknown)} in prunescope/presets/")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:  # seed-major: an interrupted run still has every row at some seeds
            for row_id, preset_name, paper, _ in wanted:
                config = row_config(presets[preset_name], args.epochs)
                if any(r["row"] == row_id and r["seed"] == seed and r["config"] == {**config, "training": {
                        **config["training"], "seed": seed}} for r in done):
                    continue
                result = run_row(row_id, preset_name, paper, config, seed, args.data_dir)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
                done.append(result)
    merged = [json.loads(line) for path in args.merge if path.exists() for line in path.read_text().splitlines()]
    print_table(combine(done, merged))


def unseeded(config: dict) -> dict:
    return {**config, "training": {**config["training"], "seed": None}}


def combine(done: list[dict], merged: list[dict]) -> list[dict]:
    """--out's runs, plus the merged files' runs of the same configs at seeds --out lacks (the first file wins a
    seed); a row --out ran with another config keeps only --out's runs (seeds of two configs never mix)."""
    table = list(done)
    for run in merged:
        same_row = [r for r in table if r["row"] == run["row"]]
        if all(r["seed"] != run["seed"] and unseeded(r["config"]) == unseeded(run["config"]) for r in same_row):
            table.append(run)
    return table


if __name__ == "__main__":
    main()
