"""What one worker report costs the API: CPU seconds of the API process per epoch report, with masks.

    .venv/bin/python bench/report_cost.py [--epochs 200] [--model lenet300_100|lenet300_digits]
    .venv/bin/python bench/report_cost.py --lifecycle 100   # every request of 100 short runs, per kind

Starts Redis and the API as `prunescope up` would (no workers), claims one run as a worker does, and posts
`--epochs` reports of LeNet-300-100's three masks encoded as a worker encodes them (a key frame every 16 epochs,
deltas between; 1 % of each mask flips an epoch). Prints the API's CPU milliseconds per report (from
/proc, so the client's own work is not counted) and the client's wall milliseconds per report, overall and for
key frames and the deltas early and late in their chains (the API checks a delta against the kept count the
previous report left, or, when it has none, by replaying the stored chain).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from system_cost import TOKEN, Stack, cpu_seconds, sweep_configs

from prunescope import maskcodec
from prunescope.contract.worker_api import LEASE_HEADER, WorkerPaths

SHAPES = {"lenet300_100": {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)},
          "lenet300_digits": {"fc1.weight": (300, 64), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}}


def reports(epochs: int, shapes: dict[str, tuple[int, int]]) -> list[dict]:
    rng = np.random.default_rng(0)
    masks = {name: rng.random(shape) < 0.1 for name, shape in shapes.items()}
    encoder = maskcodec.MaskEncoder()
    out = []
    for epoch in range(1, epochs + 1):
        masks = {name: mask ^ (rng.random(mask.shape) < 0.01) for name, mask in masks.items()}
        layers = [{"name": name, "shape": list(mask.shape), "sparsity": float(1 - mask.mean()), "pruned": 10,
                   "regrown": 5, "threshold": 0.01} for name, mask in masks.items()]
        out.append({"worker": "bench", "epoch": epoch, "train_loss": 1 / epoch, "train_acc": 0.9, "test_loss": 0.1,
                    "test_acc": 0.95, "lr": 0.1, "sparsity": 0.9, "nonzero": 100, "total": 1000,
                    "epoch_seconds": 1.0, "samples_per_s": 1000.0, "layers": layers,
                    "masks": encoder.encode(epoch, masks)})
    return out


def lifecycle(runs: int) -> None:
    """Every request of a short run, as a worker makes them, `runs` times (after 5 to warm up): the API's CPU
    milliseconds a request of each kind (/proc counts in 10-ms ticks: use 50 runs or more). Every other run ends
    with its last three reports in the finish, the others with a batch of them and then the finish."""
    import io

    import torch

    shapes = SHAPES["lenet300_digits"]
    bodies = reports(4, shapes)
    buffer = io.BytesIO()
    torch.save({name: torch.zeros(shape) for name, shape in shapes.items()}, buffer)
    model = buffer.getvalue()
    summary = {"final_test_acc": 0.9, "best_test_acc": 0.9, "final_sparsity": 0.5, "nonzero": 1, "total": 2,
               "epochs_done": 4}
    stack = Stack(Path(tempfile.mkdtemp(prefix="prunescope-report-cost-")))
    cpu: dict[str, float] = {}
    counts: dict[str, int] = {}
    try:
        worker = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

        def timed(kind: str, client: httpx.Client, method: str, path: str, **request: Any) -> httpx.Response:
            before = cpu_seconds(stack.api.pid)
            response = client.request(method, path, **request)
            if response.status_code != 404:
                response.raise_for_status()
            if measured:
                cpu[kind] = cpu.get(kind, 0.0) + cpu_seconds(stack.api.pid) - before
                counts[kind] = counts.get(kind, 0) + 1
            return response

        for n in range(runs + 5):
            measured = n >= 5
            config = {**sweep_configs(1, 4)[0], "name": "report-cost", "tags": ["report-cost"]}
            run_id = timed("submit (POST /api/runs)", stack.http, "POST", "/api/runs", json=config).json()["id"]
            claim = timed("claim (start)", worker, "POST", WorkerPaths.start(run_id), json={"worker": "bench"})
            headers = {LEASE_HEADER: claim.json()["lease"]}
            timed("epoch report", worker, "POST", WorkerPaths.epochs(run_id), json=bodies[0], headers=headers)
            # Alternate runs end as a worker of this version does (the last reports in the finish) and as one
            # before it did (a batch, then the finish): the two ends side by side.
            if n % 2:
                timed("model.pt upload", worker, "PUT", WorkerPaths.artifact(run_id, "model.pt"), content=model,
                      headers={**headers, "Content-Type": "application/octet-stream"})
                timed("finish carrying 3 epoch reports", worker, "POST", WorkerPaths.finish(run_id),
                      headers=headers, json={"worker": "bench", "status": "completed", "summary": summary,
                                             "epochs": bodies[1:]})
            else:
                timed("batch of 3 epoch reports", worker, "POST", WorkerPaths.epoch_batch(run_id),
                      json={"epochs": bodies[1:]}, headers=headers)
                timed("model.pt upload", worker, "PUT", WorkerPaths.artifact(run_id, "model.pt"), content=model,
                      headers={**headers, "Content-Type": "application/octet-stream"})
                timed("finish", worker, "POST", WorkerPaths.finish(run_id), headers=headers,
                      json={"worker": "bench", "status": "completed", "summary": summary})
            timed("heartbeat", worker, "POST", WorkerPaths.heartbeat, json={"worker": "bench"})
            timed("a 404 (the middleware alone)", worker, "GET", "/api/no-such-path")
        worker.close()
    finally:
        stack.close()
    print(f"{runs} short runs (4 epochs of LeNet-300-100-on-digits masks) through a real API, as a worker sends them")
    for kind, used in cpu.items():
        print(f"{kind:32} API CPU {1e3 * used / counts[kind]:6.2f} ms a request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--model", choices=sorted(SHAPES), default="lenet300_100")
    parser.add_argument("--lifecycle", type=int, default=0, metavar="RUNS",
                        help="instead: every request of RUNS short runs, the API's CPU per kind of request")
    args = parser.parse_args()
    if args.lifecycle:
        lifecycle(args.lifecycle)
        return
    bodies = reports(args.epochs, SHAPES[args.model])
    stack = Stack(Path(tempfile.mkdtemp(prefix="prunescope-report-cost-")))
    try:
        config = {**sweep_configs(1, args.epochs)[0], "name": "report-cost", "tags": ["report-cost"]}
        run_id = stack.submit(config)
        worker = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        start = worker.post(WorkerPaths.start(run_id), json={"worker": "bench"})
        start.raise_for_status()
        headers = {LEASE_HEADER: start.json()["lease"]}
        cpu, wall = {}, {}
        for body in bodies:
            before, began = cpu_seconds(stack.api.pid), time.perf_counter()
            worker.post(WorkerPaths.epochs(run_id), json=body, headers=headers).raise_for_status()
            wall[body["epoch"]] = time.perf_counter() - began
            cpu[body["epoch"]] = cpu_seconds(stack.api.pid) - before
        worker.close()
    finally:
        stack.close()

    def line(label: str, epochs: list[int]) -> str:
        return (f"{label:28} API CPU {1e3 * sum(cpu[e] for e in epochs) / len(epochs):6.2f} ms a report, "
                f"client wall p50 {1e3 * statistics.median(wall[e] for e in epochs):6.2f} ms")

    print(f"{args.epochs} reports of {args.model}'s masks ({', '.join(map(str, SHAPES[args.model].values()))})")

    def position(epoch: int) -> int:  # 1 is a key frame; 2..16 the deltas after it
        return (epoch - 1) % maskcodec.KEYFRAME_EVERY + 1

    print(line("all epochs", list(cpu)))
    print(line("key frames", [e for e in cpu if position(e) == 1]))
    print(line("deltas 2-8 of each chain", [e for e in cpu if 2 <= position(e) <= 8]))
    print(line("deltas 9-16 of each chain", [e for e in cpu if position(e) >= 9]))


if __name__ == "__main__":
    main()
