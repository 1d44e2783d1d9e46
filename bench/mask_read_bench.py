"""Mask-grid reads under load: ten concurrent readers while a run reports (issue 10's target: p95 ≤ 100 ms).

    .venv/bin/python bench/mask_read_bench.py [--epochs 60] [--readers 10]

A real API under uvicorn in a child process; a simulated worker claims a run and reports `--epochs`
LeNet-300-100-sized epochs (fc1 300x784, fc2 100x300, fc3 10x100; RigL-like churn, real mask encoding),
one every 0.3 s; meanwhile `--readers` threads each ask for random layers at random recorded epochs
(`GET /api/runs/{id}/masks/{layer}?epoch=`), as a mask slider does. Prints p50/p95/max of the reads.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prunescope import maskcodec, services  # noqa: E402

TOKEN = "bench-token"
LAYERS = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}


def frames(epochs: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    masks = {name: rng.random(shape) >= 0.9 for name, shape in LAYERS.items()}
    out = []
    for _ in range(epochs):
        for mask in masks.values():
            flat = mask.reshape(-1)
            kept, pruned = np.flatnonzero(flat), np.flatnonzero(~flat)
            n = max(1, len(kept) // 100)
            flat[rng.choice(kept, n, replace=False)] = False
            flat[rng.choice(pruned, n, replace=False)] = True
        out.append({name: mask.copy() for name, mask in masks.items()})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between epoch reports")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="prunescope-maskread-"))
    port = services.free_port()
    env = {**os.environ, "PRUNESCOPE_HOME": str(home), "PRUNESCOPE_WORKER_TOKEN": TOKEN,
           "PRUNESCOPE_REDIS_URL": "redis://127.0.0.1:1/0", "PRUNESCOPE_PORT": str(port)}
    api = subprocess.Popen([sys.executable, "-m", "prunescope.cli", "api"], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    samples: list[float] = []
    lock = threading.Lock()
    try:
        services.wait_for_port(port, 60)
        worker = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"})
        run_id = worker.post("/api/runs", json={"name": "mask-read", "training": {"epochs": args.epochs}}).json()["id"]
        lease = worker.post(f"/api/worker/runs/{run_id}/start", json={"worker": "bench"}).json().get("lease")
        if lease:
            worker.headers["X-Prunescope-Lease"] = lease
        recorded = [0]
        done = threading.Event()

        def read() -> None:
            rng = random.Random(threading.get_ident())
            with httpx.Client(base_url=base, timeout=60) as http:
                while not done.is_set():
                    if recorded[0] == 0:
                        time.sleep(0.05)
                        continue
                    layer = rng.choice(list(LAYERS))
                    epoch = rng.randint(1, recorded[0])
                    started = time.perf_counter()
                    http.get(f"/api/runs/{run_id}/masks/{layer}", params={"epoch": epoch}).raise_for_status()
                    with lock:
                        samples.append((time.perf_counter() - started) * 1000)

        readers = [threading.Thread(target=read, daemon=True) for _ in range(args.readers)]
        for thread in readers:
            thread.start()
        previous: dict[str, np.ndarray] = {}
        for epoch, masks in enumerate(frames(args.epochs), start=1):
            key = (epoch - 1) % maskcodec.KEYFRAME_EVERY == 0
            body = {"worker": "bench", "epoch": epoch, "sparsity": 0.9,
                    "layers": [{"name": n, "shape": list(s), "sparsity": 0.9} for n, s in LAYERS.items()],
                    "masks": {n: maskcodec.encode(m, None if key else previous[n]).to_json() for n, m in masks.items()}}
            worker.post(f"/api/worker/runs/{run_id}/epochs", json=body).raise_for_status()
            previous = masks
            recorded[0] = epoch
            time.sleep(args.interval)
        done.set()
        for thread in readers:
            thread.join(timeout=60)
    finally:
        api.terminate()
        api.wait(timeout=20)
    samples.sort()
    print(f"{len(samples)} mask-grid reads by {args.readers} readers while {args.epochs} epochs were reported: "
          f"p50 {statistics.median(samples):.1f} ms, p95 {samples[int(0.95 * (len(samples) - 1))]:.1f} ms, "
          f"max {samples[-1]:.1f} ms (target p95 ≤ 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
