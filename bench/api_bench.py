"""API latency on 2 cores: the runs list over 10 000 runs, and metrics/epochs/compare of 1000-epoch, 20-layer runs.

    .venv/bin/python bench/api_bench.py [--runs 10000] [--requests 300] [--db /tmp/prunescope-bench.db]

Fills a SQLite file through the ORM (fast), serves it with uvicorn in a child process (so the measuring
client does not share the server's GIL), then times sequential requests over HTTP with gzip as a browser
asks for it. SPEC targets: runs list p95 ≤ 50 ms, metrics p95 ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import migrate
from backend.db import Database
from backend.tables import Epoch, Run, utcnow
from prunescope.contract.config import RunConfig
from prunescope.services import free_port

STRATEGIES = ("dense", "magnitude/unstructured", "magnitude/unstructured+splice", "magnitude/unstructured+gradient",
              "random/unstructured", "activation/neuron")
STATUSES = ("completed", "completed", "completed", "failed", "cancelled")  # none queued: the dispatcher idles
BIG_EPOCHS, BIG_LAYERS = 1000, 20


def fill(db: Database, runs: int) -> list[int]:
    """`runs` finished runs, plus three of BIG_EPOCHS epochs with BIG_LAYERS layer stats each; their ids."""
    rng = random.Random(0)
    now = utcnow()
    # A full config as submissions store it (about 1 kB of JSON per run), so rows are as wide as real ones.
    config = RunConfig.model_validate(RunConfig.model_json_schema()["examples"][0]).model_dump(mode="json")
    with db.writing() as session:
        session.add_all(
            Run(name=f"bench-{i}", tags=["bench", f"group{i % 10}"], notes="", status=rng.choice(STATUSES),
                config=config, strategy=rng.choice(STRATEGIES), device="cpu", model_name="lenet300_100",
                dataset_name=rng.choice(("digits", "mnist")), created_at=now - timedelta(seconds=runs - i),
                epochs_total=30, epochs_done=30, dispatched=True, attempts=1, cancel_requested=False,
                sparsity=rng.random(), test_acc=rng.random(), best_test_acc=rng.random())
            for i in range(runs))
    big_ids = []
    for b in range(3):
        with db.writing() as session:
            run = Run(name=f"big-{b}", tags=["big"], notes="", status="completed", config=config,
                      strategy="magnitude/unstructured+splice", device="cpu", model_name="lenet300_100",
                      dataset_name="mnist", created_at=now, epochs_total=BIG_EPOCHS, epochs_done=BIG_EPOCHS,
                      dispatched=True, attempts=1, cancel_requested=False, sparsity=0.98, test_acc=0.98)
            session.add(run)
            session.flush()
            big_ids.append(run.id)
            session.add_all(
                Epoch(run_id=run.id, epoch=e, train_loss=1 / e, train_acc=0.9, test_loss=1.1 / e, test_acc=0.97,
                      lr=0.1, sparsity=min(0.98, e / 800), target_sparsity=0.98, nonzero=1000, total=266_200,
                      epoch_seconds=1.0, samples_per_s=60000.0, recorded_at=now,
                      layers=[{"name": f"layer{k}.weight", "shape": [300, 784], "sparsity": 0.9, "pruned": 10,
                               "regrown": 5, "threshold": 0.01} for k in range(BIG_LAYERS)])
                for e in range(1, BIG_EPOCHS + 1))
    return big_ids


def serve(db_path: Path, port: int) -> None:
    import uvicorn

    from backend.app import create_app
    from prunescope.config import Settings

    settings = Settings(home=db_path.parent / "home", database_url=f"sqlite:///{db_path}",
                        worker_token="bench", redis_url="redis://127.0.0.1:1/0")
    uvicorn.run(create_app(settings, start_dispatcher=False), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


def timed(http: httpx.Client, url: str, requests: int) -> tuple[float, float, int]:
    for _ in range(10):  # warm-up: connection, caches, first-query planning
        http.get(url).raise_for_status()
    samples = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = http.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        size = len(response.content)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: a fresh temporary one)")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.db, args.serve)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="prunescope-bench-"))
    db_path = args.db or workdir / "bench.db"
    db_path.unlink(missing_ok=True)
    db = Database(f"sqlite:///{db_path}")
    migrate.upgrade(db)
    started = time.perf_counter()
    big = fill(db, args.runs)
    db.dispose()
    print(f"filled {args.runs} runs + 3 x {BIG_EPOCHS} epochs x {BIG_LAYERS} layers in "
          f"{time.perf_counter() - started:.1f} s ({db_path.stat().st_size / 1e6:.0f} MB)", flush=True)

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--db", str(db_path)],
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    http.get("/api/health")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the API did not start") from None
                    time.sleep(0.1)
            endpoints = {
                "runs list (newest 50)": "/api/runs",
                "runs list (completed, -test_acc, min_sparsity)":
                    "/api/runs?status=completed&sort=-test_acc&min_sparsity=0.5",
                "runs list (tag, page 20)": "/api/runs?tag=group3&offset=950&limit=50",
                "metrics (11 series, 1000 epochs)": f"/api/runs/{big[0]}/metrics",
                "metrics (2 series, max_points=200)": f"/api/runs/{big[0]}/metrics?names=test_acc,sparsity"
                                                       "&max_points=200",
                "epochs (1000 x 20 layers, full)": f"/api/runs/{big[0]}/epochs",
                "compare (3 runs, 2 series)": f"/api/compare?ids={','.join(map(str, big))}&names=test_acc,sparsity",
                "pareto (about 6000 completed runs)": "/api/pareto?model=lenet300_100",
            }
            print(f"{'endpoint':<50} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>9}")
            for label, url in endpoints.items():
                requests = args.requests if "epochs (" not in label else max(20, args.requests // 10)
                p50, p95, size = timed(http, url, requests)
                print(f"{label:<50} {p50:>8.1f} {p95:>8.1f} {size:>9}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
