"""Issue 4's figures: report → SSE latency, recording overhead per epoch, mask storage in bits per weight.

    .venv/bin/python bench/live_bench.py --data-dir ../shared/data/mnist --epochs 10

Latency: a simulated worker posts LeNet-300-100-sized epoch reports (real masks, real encoding) to a
real API under uvicorn; a client on the SSE stream timestamps each `epoch` event.
Overhead: LeNet-300-100 on MNIST trained by the engine; the time spent in the worker's recording
callback (mask encoding, JSON, queueing) as a share of the epoch, and the reporter thread's sending
time, which runs beside training.
Storage: mask snapshot bytes × 8 / (weights × epochs) of a 98 %-sparse `rigl` run and a `gmp` run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prunescope import maskcodec, services  # noqa: E402

TOKEN = "bench-token"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def bench_latency(epochs: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="prunescope-live-"))
    port = services.free_port()
    env = {**os.environ, "PRUNESCOPE_HOME": str(home), "PRUNESCOPE_WORKER_TOKEN": TOKEN,
           "PRUNESCOPE_REDIS_URL": "redis://127.0.0.1:1/0", "PRUNESCOPE_PORT": str(port)}
    api = subprocess.Popen([sys.executable, "-m", "prunescope.cli", "api"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        services.wait_for_port(port, 60)
        http = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})
        run_id = http.post("/api/runs", json={"name": "latency", "training": {"epochs": epochs}}).json()["id"]
        http.post(f"/api/worker/runs/{run_id}/start", json={"worker": "bench"})
        received: dict[int, float] = {}
        ready = threading.Event()

        def listen() -> None:
            with httpx.stream("GET", f"{base}/api/runs/{run_id}/events", timeout=None) as response:
                event = None
                for line in response.iter_lines():
                    ready.set()
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "epoch":
                        received[json.loads(line[5:])["epoch"]] = time.perf_counter()
                    if len(received) == epochs:
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        ready.wait(10)
        rng = np.random.default_rng(0)
        shapes = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
        current = {name: rng.random(shape) < 0.05 for name, shape in shapes.items()}
        encoder = maskcodec.MaskEncoder()
        sent: dict[int, float] = {}
        for epoch in range(1, epochs + 1):
            for mask in current.values():
                mask.flat[rng.integers(0, mask.size, mask.size // 200)] ^= True
            body = {"worker": "bench", "epoch": epoch, "train_loss": 0.1, "test_acc": 0.98, "sparsity": 0.95,
                    "layers": [{"name": n, "shape": list(s), "sparsity": 0.95, "pruned": 10, "regrown": 10}
                               for n, s in shapes.items()],
                    "masks": encoder.encode(epoch, current)}
            sent[epoch] = time.perf_counter()
            http.post(f"/api/worker/runs/{run_id}/epochs", json=body).raise_for_status()
            time.sleep(0.05)
        listener.join(30)
        latencies = [received[e] - sent[e] for e in sent if e in received]
        return {"events": len(latencies), "p50_ms": percentile(latencies, 50) * 1e3,
                "p95_ms": percentile(latencies, 95) * 1e3, "max_ms": max(latencies) * 1e3}
    finally:
        services.stop([api])


def bench_training(data_dir: Path, epochs: int, preset: dict[str, Any]) -> dict[str, float]:
    """Train with the worker's recording callback; time the callback and measure the mask bytes."""
    import torch

    from prunescope.contract import EpochRecord
    from prunescope.contract.config import RunConfig
    from worker.engine.training import run_training

    torch.set_num_threads(1)
    config = RunConfig.model_validate(preset)
    encoder = maskcodec.MaskEncoder()
    callback_seconds: list[float] = []
    epoch_seconds: list[float] = []
    mask_bytes = 0
    weights = 0

    def on_epoch(record: EpochRecord, layer_masks: dict[str, Any]) -> None:
        nonlocal mask_bytes, weights
        started = time.perf_counter()
        encoded = encoder.encode(record.epoch, layer_masks)
        json.dumps({**record.model_dump(mode="json"), "masks": encoded})
        callback_seconds.append(time.perf_counter() - started)
        epoch_seconds.append(record.epoch_seconds or 0.0)
        for name, mask in layer_masks.items():
            mask_bytes += len(maskcodec.EncodedMask.from_json(encoded[name]).data)
            weights += mask.size
        print(f"  epoch {record.epoch}/{epochs}: {record.epoch_seconds:.2f} s, "
              f"sparsity {record.sparsity:.4f}, test acc {record.test_acc:.4f}", file=sys.stderr)

    run_training(config, data_dir=data_dir, device="cpu", on_epoch=on_epoch)
    return {"recording_share_pct": 100 * sum(callback_seconds) / sum(epoch_seconds),
            "callback_ms": 1e3 * statistics.mean(callback_seconds),
            "epoch_s": statistics.mean(epoch_seconds), "bits_per_weight": mask_bytes * 8 / weights}


def mnist_config(epochs: int, pruning: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bench", "model": {"name": "lenet300_100"}, "dataset": {"name": "mnist"},
            "training": {"epochs": epochs, "batch_size": 128, "lr": 0.1}, "pruning": pruning}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latency-epochs", type=int, default=100)
    args = parser.parse_args()

    print("report → SSE latency (LeNet-300-100-sized reports with masks):", file=sys.stderr)
    latency = bench_latency(args.latency_epochs)
    runs = {
        "rigl 98%": {"target_sparsity": 0.98, "schedule": {"kind": "constant", "start_epoch": 0, "every_steps": 100},
                     "recovery": {"kind": "gradient", "drop_fraction": 0.3, "every_steps": 100}},
        "gmp 98%": {"target_sparsity": 0.98,
                    "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": max(1, args.epochs * 3 // 4),
                                 "every_steps": 100}},
    }
    results = {}
    for label, pruning in runs.items():
        print(f"{label}: training {args.epochs} epochs on MNIST", file=sys.stderr)
        results[label] = bench_training(args.data_dir, args.epochs, mnist_config(args.epochs, pruning))

    print(f"\nreport → SSE event latency over {latency['events']} epochs: p50 {latency['p50_ms']:.1f} ms, "
          f"p95 {latency['p95_ms']:.1f} ms, max {latency['max_ms']:.1f} ms  (target ≤ 500 ms)")
    print(f"{'run':<10} {'epoch s':>8} {'recording ms':>13} {'share %':>8} {'bits/weight':>12}")
    for label, r in results.items():
        print(f"{label:<10} {r['epoch_s']:>8.2f} {r['callback_ms']:>13.1f} {r['recording_share_pct']:>8.2f} "
              f"{r['bits_per_weight']:>12.3f}")
    print("targets: recording ≤ 2 % of the epoch; masks ≤ 0.3 bit per weight averaged over the run")


if __name__ == "__main__":
    main()
