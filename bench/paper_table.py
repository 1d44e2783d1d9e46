"""Paper-style table on real MNIST: test error and sparsity of LeNet-300-100 / LeNet-5 per pruning method.

    .venv/bin/python bench/paper_table.py --data-dir /work/shared/data/mnist --epochs 30
Rows run one at a time on one thread; each finished row is appended to --out (JSON lines), so a
partial run still leaves its results; --table-only prints the table from that file.
"error %" is the final epoch's test error; "best err %" is the lowest over epochs (picked on the test
set, so optimistic, shown only to expose dips).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunescope.presets import load_presets
from worker.engine.training import run_training

# (row id, preset, model, target sparsity override or None, what the paper reports)
ROWS: list[tuple[str, str, str, float | None, str]] = [
    ("lenet300-dense", "dense", "lenet300_100", None, "≈1.6 % error"),
    ("lenet300-han2015-92", "han2015", "lenet300_100", None, "Han 2015: 1.59 % at 92 %"),
    ("lenet300-dns-98.2", "dns", "lenet300_100", 0.982, "DNS: 1.99 % at 98.2 %"),
    ("lenet300-dpf-98.2", "dpf", "lenet300_100", 0.982, "DNS: 1.99 % at 98.2 %"),
    ("lenet300-gmp-98.2", "gmp", "lenet300_100", 0.982, "DNS: 1.99 % at 98.2 %"),
    ("lenet300-rigl-98", "rigl", "lenet300_100", 0.98, "sparse momentum: 1.99 % at 98 %"),
    ("lenet300-dpf-98", "dpf", "lenet300_100", 0.98, ""),
    ("lenet300-dns-98", "dns", "lenet300_100", 0.98, ""),
    ("lenet300-gmp-98", "gmp", "lenet300_100", 0.98, ""),
    ("lenet300-set-98", "set", "lenet300_100", 0.98, ""),
    ("lenet300-dns-99", "dns", "lenet300_100", 0.99, "sparse momentum: 2.36 % at 99 %"),
    ("lenet300-dpf-99", "dpf", "lenet300_100", 0.99, ""),
    ("lenet300-rigl-99", "rigl", "lenet300_100", 0.99, ""),
    ("lenet300-gmp-99", "gmp", "lenet300_100", 0.99, ""),
    ("lenet5-dns-99.1", "dns", "lenet5", 0.991, "DNS: 0.91 % at 99.1 %"),
    ("lenet5-dpf-99.1", "dpf", "lenet5", 0.991, ""),
]


def row_config(preset: dict, model: str, target: float | None, epochs: int) -> dict:
    """The preset on MNIST with `epochs` epochs; epoch-valued schedule fields scale along."""
    config = copy.deepcopy(preset)
    config["dataset"] = {"name": "mnist", "limit": None}
    config["model"] = {"name": model, "hidden": None}
    scale = epochs / config["training"]["epochs"]
    config["training"]["epochs"] = epochs
    pruning = config.get("pruning")
    if pruning is not None:
        if target is not None:
            pruning["target_sparsity"] = target
        for block in (pruning["schedule"], pruning["recovery"]):
            for key in ("start_epoch", "end_epoch"):
                if block.get(key) is not None:
                    block[key] = min(epochs, max(1, round(block[key] * scale)))
    return config


def print_table(results: list[dict]) -> None:
    print(f"{'row':24} {'error %':>8} {'best err %':>10} {'sparsity %':>10} {'compression':>11} {'min':>6}  paper")
    for r in results:
        s = r["summary"]
        ratio = s["total"] / max(1, s["nonzero"])
        print(f"{r['row']:24} {100 * (1 - s['final_test_acc']):8.2f} {100 * (1 - s['best_test_acc']):10.2f} "
              f"{100 * s['final_sparsity']:10.2f} {ratio:10.1f}x {s['wall_seconds'] / 60:6.1f}  {r['paper']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/mnist"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", default="", help="comma-separated row ids (default: all, in order)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/paper_table.jsonl"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one row at a time on one core
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.table_only:
        presets = load_presets()
        wanted = [r for r in ROWS if not args.rows or r[0] in args.rows.split(",")]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for row_id, preset, model, target, paper in wanted:
            config = row_config(presets[preset], model, target, args.epochs)
            started = time.time()

            def progress(record: dict, row_id: str = row_id, started: float = started) -> None:
                print(f"[{row_id}] epoch {record['epoch']}/{args.epochs} test_acc={record['test_acc']:.4f} "
                      f"sparsity={record['sparsity']:.4f} loss={record['train_loss']:.4f} "
                      f"{record['epoch_seconds']:.1f}s elapsed={time.time() - started:.0f}s",
                      file=sys.stderr, flush=True)

            summary = run_training(config, data_dir=args.data_dir, device="cpu", on_epoch=progress)
            result = {"row": row_id, "paper": paper, "epochs": args.epochs, "config": config, "summary": summary}
            with args.out.open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            done.append(result)
    print_table(done)


if __name__ == "__main__":
    main()
