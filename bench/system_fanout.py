"""Many SSE clients on one run for bench/system_cost.py: a simulated worker reports, every client timestamps.

The clients are asyncio streams in one process (so a thousand threads do not skew the clock), the
worker is a plain HTTP client in the same loop: `sent` and `received` are read from one clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import numpy as np

from prunescope.contract.worker_api import LEASE_HEADER, WorkerPaths
from prunescope.maskcodec import MaskEncoder

WORKER = "bench-simulated-worker"
# LeNet-300-100's layers: reports as large as a real run's, masks encoded as the worker encodes them.
SHAPES = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}


def epoch_reports(epochs: int) -> list[dict[str, Any]]:
    """`epochs` worker reports with real, slowly changing 95 %-sparse masks (built before the clock starts)."""
    rng = np.random.default_rng(0)
    current = {name: rng.random(shape) < 0.05 for name, shape in SHAPES.items()}
    encoder = MaskEncoder()
    reports = []
    for epoch in range(1, epochs + 1):
        for mask in current.values():
            mask.flat[rng.integers(0, mask.size, mask.size // 200)] ^= True
        reports.append({
            "worker": WORKER, "epoch": epoch, "train_loss": 1 / epoch, "test_acc": 0.9, "sparsity": 0.95,
            "layers": [{"name": n, "shape": list(s), "sparsity": 0.95, "pruned": 10, "regrown": 10}
                       for n, s in SHAPES.items()],
            "masks": encoder.encode(epoch, current)})
    return reports


async def _fan_out(base: str, token: str, run_id: int, clients: int, epochs: int,
                   interval: float) -> dict[str, Any]:
    reports = epoch_reports(epochs)
    sent: dict[int, float] = {}
    received: list[dict[int, float]] = [{} for _ in range(clients)]
    connected = 0
    all_connected = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(60, read=120)) as viewers, \
            httpx.AsyncClient(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as worker:

        async def listen(k: int) -> None:
            nonlocal connected
            async with viewers.stream("GET", f"/api/runs/{run_id}/events") as response:
                response.raise_for_status()
                event = None
                counted = False
                async for line in response.aiter_lines():
                    if not counted:  # the first line (the retry hint) says the stream is open
                        counted = True
                        connected += 1
                        if connected == clients:
                            all_connected.set()
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "epoch":
                        received[k][json.loads(line[5:])["epoch"]] = time.perf_counter()
                        if len(received[k]) == epochs:
                            return

        listeners = [asyncio.create_task(listen(k)) for k in range(clients)]
        await asyncio.wait_for(all_connected.wait(), 120)
        await asyncio.sleep(0.5)  # every stream past its first database read, waiting on the hub
        start = await worker.post(WorkerPaths.start(run_id), json={"worker": WORKER})
        start.raise_for_status()
        lease = start.json().get("lease")
        headers = {LEASE_HEADER: lease} if lease else {}
        for report in reports:
            sent[report["epoch"]] = time.perf_counter()
            (await worker.post(WorkerPaths.epochs(run_id), json=report, headers=headers)).raise_for_status()
            await asyncio.sleep(interval)
        done, pending = await asyncio.wait(listeners, timeout=60)
        for task in pending:
            task.cancel()
        failed = [t.exception() for t in done if t.exception() is not None]
        finish = await worker.post(WorkerPaths.finish(run_id), json={"worker": WORKER, "status": "completed"},
                                   headers=headers)
        finish.raise_for_status()
    latencies = [got[e] - sent[e] for got in received for e in got if e in sent]
    return {"clients": clients, "epochs": epochs, "events": len(latencies), "expected": clients * epochs,
            "p50_ms": 1e3 * float(np.percentile(latencies, 50)) if latencies else float("nan"),
            "p95_ms": 1e3 * float(np.percentile(latencies, 95)) if latencies else float("nan"),
            "max_ms": 1e3 * max(latencies) if latencies else float("nan"),
            "client_errors": [repr(e) for e in failed][:3]}


def fan_out(base: str, token: str, run_id: int, clients: int, epochs: int, interval: float) -> dict[str, Any]:
    """Claim queued run `run_id` as a worker, post `epochs` reports `interval` s apart to `clients` viewers."""
    return asyncio.run(_fan_out(base, token, run_id, clients, epochs, interval))
