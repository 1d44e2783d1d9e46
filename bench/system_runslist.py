"""The runs list at scale for bench/system_cost.py: latency on SQLite and PostgreSQL, and the API's memory.

Run by system_cost.py; alone: `.venv/bin/python bench/system_runslist.py --runs 2000 --backends sqlite`.
The database is filled through the ORM by bench/api_bench.py's `fill` and served by uvicorn in a child
process (as `prunescope api` serves it), so the measuring client never shares the server's GIL.
On PostgreSQL the benchmark creates its own database (`prunescope_bench`) and drops it afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_bench import fill, timed  # noqa: E402

from backend import migrate  # noqa: E402
from backend.db import Database  # noqa: E402
from prunescope.services import free_port  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "prunescope_bench"  # ours alone: never the `test` database the test suite uses
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
QUERIES = {
    "newest 50": "/api/runs",
    "completed, -test_acc, min_sparsity": "/api/runs?status=completed&sort=-test_acc&min_sparsity=0.5",
    "tag, page 20": "/api/runs?tag=group3&offset=950&limit=50",
}


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:  # CREATE/DROP DATABASE refuse a transaction
        conn.execute(statement)


def create_pg_database() -> str:
    _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")  # a leftover of an interrupted run
    _pg_admin(f"CREATE DATABASE {PG_DATABASE}")
    return PG_URL


def drop_pg_database() -> None:
    _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


def serve(url: str, home: Path, port: int) -> None:
    import uvicorn

    from backend.app import create_app
    from prunescope.config import Settings

    settings = Settings(home=home, database_url=url, worker_token="bench", redis_url="redis://127.0.0.1:1/0")
    uvicorn.run(create_app(settings, start_dispatcher=False), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB
    return fields


def wait_healthy(http: httpx.Client, server: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the API did not start")
        time.sleep(0.2)


def measure(backend: str, runs: int, requests: int, workdir: Path) -> dict[str, Any]:
    """Fill `runs` runs into a fresh database of `backend`, serve it, time QUERIES and read the API's memory."""
    url = create_pg_database() if backend == "postgresql" else f"sqlite:///{workdir / 'runs.db'}"
    try:
        db = Database(url)
        migrate.upgrade(db)
        started = time.perf_counter()
        fill(db, runs)
        if backend == "postgresql":
            # What autovacuum does within a minute of a bulk insert (PostgreSQL ≥ 13 vacuums after inserts too):
            # statistics, and the visibility map that lets COUNT(*) use an index-only scan.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        fill_s = time.perf_counter() - started
        db.dispose()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), "--url", url, "--home", str(workdir / "home")],
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Accept-Encoding": "gzip"}) as http:
                wait_healthy(http, server)
                latency = {label: timed(http, path, requests) for label, path in QUERIES.items()}
                memory = memory_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=15)
        return {"backend": backend, "runs": runs, "fill_s": fill_s, "latency": latency, "memory": memory}
    finally:
        if backend == "postgresql":
            drop_pg_database()


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n4. runs list  (target p95 ≤ 50 ms)")
    print(f"{'database':<11} {'runs':>7} {'query':<36} {'p50 ms':>7} {'p95 ms':>7} {'bytes':>7}")
    for r in results:
        for label, (p50, p95, size) in r["latency"].items():
            print(f"{r['backend']:<11} {r['runs']:>7} {label:<36} {p50:>7.1f} {p95:>7.1f} {size:>7}")
    print(f"{'database':<11} {'runs':>7} {'API VmRSS MB':>13} {'VmHWM MB':>9} {'fill s':>7}")
    for r in results:
        print(f"{r['backend']:<11} {r['runs']:>7} {r['memory'].get('VmRSS', 0):>13.0f} "
              f"{r['memory'].get('VmHWM', 0):>9.0f} {r['fill_s']:>7.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.url, args.home, args.serve)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="prunescope-runslist-"))
    print_table([measure(b.strip(), args.runs, args.requests, workdir) for b in args.backends.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
