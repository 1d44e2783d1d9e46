"""prunescope beside MLflow and trackio: the same synthetic pruning history logged, then read back.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r bench/requirements.txt  # not the product's
    .venv-bench/bin/python bench/vs_mlflow.py [--epochs 1000] [--layers 20] [--mask-epochs 200]

History: `--epochs` epochs x (11 run metrics + `--layers` layers x sparsity/pruned/regrown/threshold) = 91
scalars an epoch by default. Each tool runs on this machine in this one process run, side by side:
- MLflow: its tracking server (`mlflow server`, SQLite backend store, local artifact root), `log_batch` once per
  epoch (its fastest documented path); masks as one `np.savez_compressed` artifact per epoch.
- prunescope, per epoch: one worker report per epoch (`POST /api/worker/runs/{id}/epochs`), as a worker sends it
  (a kept-alive httpx client, the body serialised once: the worker sends `model_dump_json()` bytes).
- prunescope, batch: the tracking SDK's ingest (many epochs in one request and one transaction), when the API
  offers it. Both prunescope paths end with the run's finish, as trackio's ends with `trackio.finish()`.
- trackio: in-process SQLite (no server), `trackio.log` per epoch, durable at `trackio.finish()`.
Read back: the whole history (every scalar of every epoch; prunescope both as its default one-object-per-epoch
document and as `?layout=columns`, one array per series) and the five chart series a run page draws; each
`--reads` times: the table shows the best and, for the whole history, the first (for prunescope's finished runs
the answer the API kept when the run ended, one stored row; for a live run, built afresh from its epochs; later
reads of an unchanged run come from the API's memory cache, as a dashboard's re-reads do). prunescope's
client asks for gzip, as browsers do, and decodes with orjson, as trackio's reads do. Reads are timed with the
garbage collector paused, as `timeit` times (`--reads-with-gc` leaves it on): this process holds the generated
history and MLflow's and trackio's modules, and a full collection that lands inside one read charges that read
for scanning them (tens of milliseconds, more for the read that builds more objects).
Masks: `--layers` masks of 100 x 300 at 90 % sparsity with RigL-like churn (0.5 % of the kept weights a
epoch), over the first `--mask-epochs` epochs (MLflow's artifact path is slow; the figure is per epoch).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prunescope import maskcodec  # noqa: E402  (numpy only: no torch, no server)

RUN_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "sparsity", "target_sparsity", "nonzero",
               "total", "epoch_seconds", "samples_per_s")
LAYER_FIELDS = ("sparsity", "pruned", "regrown", "threshold")
SERIES = ("test_acc", "train_loss", "sparsity", "lr", "test_loss")
MASK_SHAPE = (100, 300)
PRODUCT_PYTHON = ROOT / ".venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=10).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout} s")


# -- the history ------------------------------------------------------------------------------------------------

def history(epochs: int, layers: int) -> list[dict[str, Any]]:
    """Deterministic per-epoch records shaped like a worker's (11 run metrics + 4 per layer)."""
    rng = np.random.default_rng(0)
    out = []
    for epoch in range(1, epochs + 1):
        s = min(0.9, 0.9 * epoch / max(1, epochs // 2))
        out.append({
            "epoch": epoch, "train_loss": float(1 / epoch + rng.random() * 1e-3), "train_acc": float(0.9 + 0.09 * s),
            "test_loss": float(1.1 / epoch), "test_acc": float(0.95 + 0.02 * s),
            "lr": float(0.1 * (1 - epoch / epochs)),
            "sparsity": s, "target_sparsity": s, "nonzero": int((1 - s) * layers * 30000), "total": layers * 30000,
            "epoch_seconds": 1.0, "samples_per_s": 60000.0,
            "layers": [{"name": f"layer{k}.weight", "shape": list(MASK_SHAPE), "sparsity": s,
                        "pruned": int(rng.integers(0, 200)), "regrown": int(rng.integers(0, 200)),
                        "threshold": float(rng.random() * 0.05)} for k in range(layers)],
        })
    return out


def flat(record: dict[str, Any]) -> dict[str, float]:
    """The 91 scalars of an epoch under flat names (MLflow's and trackio's metric keys)."""
    out = {name: float(record[name]) for name in RUN_METRICS}
    for layer in record["layers"]:
        for field in LAYER_FIELDS:
            out[f"{layer['name']}/{field}"] = float(layer[field])
    return out


def mask_frames(epochs: int, layers: int) -> Iterator[dict[str, np.ndarray]]:
    """Per-epoch masks: 90 % sparse, 0.5 % of the kept weights dropped and as many regrown each epoch."""
    rng = np.random.default_rng(1)
    masks = {f"layer{k}.weight": rng.random(MASK_SHAPE) >= 0.9 for k in range(layers)}
    for _ in range(epochs):
        for mask in masks.values():
            flat_mask = mask.reshape(-1)
            kept, pruned = np.flatnonzero(flat_mask), np.flatnonzero(~flat_mask)
            n = max(1, int(0.005 * len(kept)))
            flat_mask[rng.choice(kept, n, replace=False)] = False
            flat_mask[rng.choice(pruned, n, replace=False)] = True
        yield {name: mask.copy() for name, mask in masks.items()}


# -- MLflow -----------------------------------------------------------------------------------------------------

@contextmanager
def served(argv: list[str], port: int, health: str, **popen: Any) -> Iterator[str]:
    """A server process started from `argv` on `port`: its URL once `health` answers; stopped afterwards."""
    proc = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + health, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def mlflow_server(workdir: Path) -> AbstractContextManager[str]:
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    return served([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
                   "--default-artifact-root", str(workdir / "mlartifacts")],
                  port, "/health", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mlflow_log(url: str, records: list[dict[str, Any]], masks: list[dict[str, np.ndarray]] | None,
               workdir: Path) -> tuple[str, float]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-{time.time_ns()}")
    started = time.perf_counter()
    run_id = client.create_run(experiment).info.run_id
    for i, record in enumerate(records):
        stamp = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(key, value, stamp, record["epoch"])
                                          for key, value in flat(record).items()])
        if masks is not None:
            path = workdir / f"masks-{record['epoch']:05d}.npz"
            np.savez_compressed(path, **masks[i])
            client.log_artifact(run_id, str(path), artifact_path="masks")
            path.unlink()
    client.set_terminated(run_id)
    return run_id, time.perf_counter() - started


def mlflow_read(url: str, run_id: str, keys: list[str]) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    started = time.perf_counter()
    for key in keys:
        points = client.get_metric_history(run_id, key)
        assert points, key
    return time.perf_counter() - started


# -- prunescope -------------------------------------------------------------------------------------------------

SERVE = """
import sys, uvicorn
from pathlib import Path
from backend.app import create_app
from prunescope.config import Settings
home = Path(sys.argv[1])
settings = Settings(home=home, database_url=f"sqlite:///{home / 'prunescope.db'}", worker_token="bench",
                    redis_url="redis://127.0.0.1:1/0", max_body_bytes=64_000_000)
uvicorn.run(create_app(settings, start_dispatcher=False), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", access_log=False)
"""


def prunescope_server(workdir: Path) -> AbstractContextManager[str]:
    port = free_port()
    home = workdir / "prunescope-home"
    home.mkdir()
    return served([str(PRODUCT_PYTHON), "-c", SERVE, str(home), str(port)], port, "/api/health", cwd=ROOT,
                  env={**os.environ, "PYTHONPATH": str(ROOT)})


def claim_run(http: httpx.Client, epochs: int) -> tuple[int, dict[str, str]]:
    """A run submitted and claimed as a worker claims it; the headers every later report carries."""
    created = http.post("/api/runs", json={"name": "bench", "training": {"epochs": epochs}})
    created.raise_for_status()
    run_id = created.json()["id"]
    worker = {"Authorization": "Bearer bench"}
    answer = http.post(f"/api/worker/runs/{run_id}/start", json={"worker": "bench"}, headers=worker)
    answer.raise_for_status()
    lease = answer.json().get("lease")
    if lease:
        worker["X-Prunescope-Lease"] = lease
    return run_id, worker


def prunescope_log_per_epoch(url: str, records: list[dict[str, Any]],
                             masks: list[dict[str, np.ndarray]] | None) -> tuple[int, float]:
    with httpx.Client(base_url=url, timeout=60) as http:
        started = time.perf_counter()
        run_id, headers = claim_run(http, len(records))
        headers["Content-Type"] = "application/json"
        encoder = maskcodec.MaskEncoder()  # as a worker encodes its masks: deltas, a key frame every 16 epochs
        for i, record in enumerate(records):
            body: dict[str, Any] = {**record, "worker": "bench"}
            if masks is not None:
                body["masks"] = encoder.encode(record["epoch"], masks[i])
            sent = http.post(f"/api/worker/runs/{run_id}/epochs", content=orjson.dumps(body), headers=headers)
            sent.raise_for_status()
        http.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "bench", "status": "completed"},
                  headers=headers).raise_for_status()
        return run_id, time.perf_counter() - started


def batch_path(url: str) -> str | None:
    """The tracked-run batch ingest path, when this API offers one."""
    paths = httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]
    return next((p for p in paths if "tracked" in p and "batch" in p), None)


def prunescope_log_batch(url: str, path: str, records: list[dict[str, Any]], per_request: int,
                         finish: bool = True) -> tuple[int, float]:
    """The SDK's ingest: a tracked run, then the epochs `per_request` at a time (one transaction each), then the
    finish (as trackio's time includes `trackio.finish()`); `finish=False` leaves the run live."""
    with httpx.Client(base_url=url, timeout=120) as http:
        started = time.perf_counter()
        created = http.post("/api/tracked-runs", json={"name": "bench-batch", "config": {"epochs": len(records)}})
        created.raise_for_status()
        answer = created.json()
        run_id = answer["id"]
        headers = {"X-Prunescope-Lease": answer["lease"], "Content-Type": "application/json"}
        target = path.replace("{run_id}", str(run_id))
        for start in range(0, len(records), per_request):
            chunk = records[start: start + per_request]
            http.post(target, content=orjson.dumps({"epochs": chunk}), headers=headers).raise_for_status()
        if finish:
            http.post(f"/api/tracked-runs/{run_id}/finish", json={"status": "completed"},
                      headers=headers).raise_for_status()
        return run_id, time.perf_counter() - started


def prunescope_read(url: str, run_id: int, what: str) -> float:
    with httpx.Client(base_url=url, timeout=60, headers={"Accept-Encoding": "gzip"}) as http:
        started = time.perf_counter()
        if what == "history":
            items = orjson.loads(http.get(f"/api/runs/{run_id}/epochs").raise_for_status().content)["items"]
            assert items
        elif what == "columns":  # the same values, one array per series
            columns = orjson.loads(http.get(f"/api/runs/{run_id}/epochs", params={"layout": "columns"})
                                   .raise_for_status().content)
            assert columns["columns"]["epoch"] and columns["layers"]
        else:
            series = orjson.loads(http.get(f"/api/runs/{run_id}/metrics", params={
                "names": ",".join(SERIES), "max_points": 100_000}).raise_for_status().content)
            assert series["series"]
        return time.perf_counter() - started


# -- trackio ----------------------------------------------------------------------------------------------------

def trackio_log(records: list[dict[str, Any]]) -> tuple[str, float]:
    import trackio

    name = f"bench-{time.time_ns()}"
    started = time.perf_counter()
    trackio.init(project="prunescope-bench", name=name, config={"epochs": len(records)})
    for record in records:
        trackio.log(flat(record), step=record["epoch"])
    trackio.finish()
    return name, time.perf_counter() - started


def trackio_read(name: str, keys: list[str] | None) -> float:
    from trackio import sqlite_storage
    from trackio.sqlite_storage import SQLiteStorage

    # trackio keeps an in-process read cache: clear it, so every read goes to its SQLite file as the others'
    # reads go to their stores (the servers' own caches stay, as they would for a browser).
    getattr(sqlite_storage, "_LOGS_READ_CACHE", {}).clear()
    started = time.perf_counter()
    if keys is None:
        logs = SQLiteStorage.get_logs("prunescope-bench", name)
        assert logs
    else:
        for key in keys:
            assert SQLiteStorage.get_metric_values("prunescope-bench", name, key)
    return time.perf_counter() - started


# -- the table --------------------------------------------------------------------------------------------------

def best_of(repeats: int, fn: Callable[[], float]) -> float:
    return min(paused_collector(fn) for _ in range(repeats))


READS_WITH_GC = False


def paused_collector(fn: Callable[[], float]) -> float:
    if READS_WITH_GC:
        return fn()
    gc.disable()
    try:
        return fn()
    finally:
        gc.enable()


def first_and_best(repeats: int, fn: Callable[[], float]) -> tuple[float, float]:
    times = [paused_collector(fn) for _ in range(repeats)]
    return times[0], min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--mask-epochs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=250, help="epochs per request on prunescope's batch path")
    parser.add_argument("--reads", type=int, default=3, help="read each back this many times; the best counts")
    parser.add_argument("--reads-with-gc", action="store_true", help="time reads with the garbage collector on")
    args = parser.parse_args()
    global READS_WITH_GC
    READS_WITH_GC = args.reads_with_gc

    workdir = Path(tempfile.mkdtemp(prefix="prunescope-vs-mlflow-"))
    os.environ["TRACKIO_DIR"] = str(workdir / "trackio")
    records = history(args.epochs, args.layers)
    keys = list(flat(records[0]))
    mask_records = records[: args.mask_epochs]
    masks = list(mask_frames(args.mask_epochs, args.layers))
    print(f"history: {args.epochs} epochs x {len(keys)} scalars; masks: {args.mask_epochs} epochs x {args.layers} "
          f"layers of {MASK_SHAPE[0]}x{MASK_SHAPE[1]}", flush=True)
    rows: list[tuple[str, str, float | None]] = []
    try:
        with mlflow_server(workdir) as ml, prunescope_server(workdir) as ps:
            ml_run, ml_log = mlflow_log(ml, records, None, workdir)
            rows.append(("log history (scalars)", "mlflow", ml_log))
            ps_run, ps_log = prunescope_log_per_epoch(ps, records, None)
            rows.append(("log history (scalars)", "prunescope per-epoch", ps_log))
            path = batch_path(ps)
            ps_batch_run = None
            if path is not None:
                ps_batch_run, ps_batch = prunescope_log_batch(ps, path, records, args.batch)
                rows.append(("log history (scalars)", "prunescope batch", ps_batch))
            tk_run, tk_log = trackio_log(records)
            rows.append(("log history (scalars)", "trackio (in-process)", tk_log))

            _, ml_mask = mlflow_log(ml, mask_records, masks, workdir)
            rows.append(("log with masks, per epoch", "mlflow", ml_mask / args.mask_epochs))
            _, ps_mask = prunescope_log_per_epoch(ps, mask_records, masks)
            rows.append(("log with masks, per epoch", "prunescope per-epoch", ps_mask / args.mask_epochs))

            whole = {"mlflow": first_and_best(args.reads, lambda: mlflow_read(ml, ml_run, keys)),
                     "prunescope": first_and_best(args.reads, lambda: prunescope_read(ps, ps_run, "history")),
                     "prunescope, ?layout=columns": first_and_best(
                         args.reads, lambda: prunescope_read(ps, ps_run, "columns")),
                     "trackio": first_and_best(args.reads, lambda: trackio_read(tk_run, None))}
            rows += [("read whole history", tool, best) for tool, (_, best) in whole.items()]
            rows += [("read whole history, 1st", tool, first) for tool, (first, _) in whole.items()]
            rows.append(("read 5 chart series", "mlflow",
                         best_of(args.reads, lambda: mlflow_read(ml, ml_run, list(SERIES)))))
            rows.append(("read 5 chart series", "prunescope",
                         best_of(args.reads, lambda: prunescope_read(ps, ps_run, "series"))))
            rows.append(("read 5 chart series", "trackio",
                         best_of(args.reads, lambda: trackio_read(tk_run, list(SERIES)))))
            if path is not None:  # a live run: nothing kept yet, its first read builds the answer from its epochs
                live_run, _ = prunescope_log_batch(ps, path, records, args.batch, finish=False)
                for layout, label in (("history", "prunescope (live run)"), ("columns", "prunescope (live, columns)")):
                    first, _ = first_and_best(1, lambda layout=layout: prunescope_read(ps, live_run, layout))
                    rows.append(("read whole history, 1st", label, first))
            if ps_batch_run is not None:
                first, best = first_and_best(args.reads, lambda: prunescope_read(ps, ps_batch_run, "history"))
                rows.append(("read whole history", "prunescope (batch-logged run)", best))
                rows.append(("read whole history, 1st", "prunescope (batch-logged run)", first))
                first, best = first_and_best(args.reads, lambda: prunescope_read(ps, ps_batch_run, "columns"))
                rows.append(("read whole history", "prunescope (batch, columns)", best))
                rows.append(("read whole history, 1st", "prunescope (batch, columns)", first))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'what':<28} {'tool':<32} {'seconds':>10} {'mlflow / this':>14}")
    baseline = {what: seconds for what, tool, seconds in rows if tool == "mlflow"}
    for what, tool, seconds in rows:
        ratio = baseline.get(what, 0) / seconds if seconds else float("nan")
        print(f"{what:<28} {tool:<32} {seconds:>10.4f} {ratio:>13.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
