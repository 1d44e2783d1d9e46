"""Tracking SDK costs (issue 11): `run.log` with `watch` on a 20-layer model as a share of a one-second epoch,
and `prunescope sync` of 1000 spooled epochs × 92 scalars. Prints a table; asserts nothing.

    .venv/bin/python bench/sdk_bench.py [--epochs 30] [--sync-epochs 1000]

The API runs as its own process (`prunescope api`, SQLite in a temporary home), as it does for a user.
"""

from __future__ import annotations

import argparse
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
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prunescope.services import free_port  # noqa: E402

TOKEN = "bench-token"


def start_api(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PRUNESCOPE_HOME": str(home), "PRUNESCOPE_API_TOKEN": TOKEN,
           "PRUNESCOPE_WORKER_TOKEN": "bench-worker", "PRUNESCOPE_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.Popen([sys.executable, "-m", "prunescope.cli", "api", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code in (200, 503):
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the API did not start")


def log_cost(url: str, epochs: int, home: Path) -> dict[str, float]:
    """Seconds per epoch the SDK costs: the `run.log` call itself, and the sender thread's CPU (masks, HTTP)."""
    import torch
    from torch import nn

    import prunescope
    from prunescope.sdk import sender as sender_module

    torch.manual_seed(0)
    torch.set_num_threads(1)
    layers: list[nn.Module] = []
    for _ in range(19):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(256, 10))  # 20 prunable layers, 1.25 M weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps = 20
    pruner = prunescope.Pruner(model, optimizer, {"target_sparsity": 0.9, "schedule": {"kind": "constant"},
                                                  "recovery": {"kind": "gradient", "every_steps": 5}},
                               epochs=epochs, steps_per_epoch=steps)
    sender_cpu: list[float] = []
    original = sender_module.Sender._process

    def timed_process(self: Any, items: list[Any]) -> None:
        start = time.thread_time()
        original(self, items)
        if items:
            sender_cpu.append(time.thread_time() - start)

    sender_module.Sender._process = timed_process  # type: ignore[method-assign]
    log_seconds = []
    run = prunescope.init(name="bench-log", api=url, token=TOKEN, dir=home / "spool")
    run.watch(pruner)
    logged_at: dict[int, float] = {}
    seen_at: dict[int, float] = {}
    listening = threading.Event()

    def listen() -> None:  # a browser's view: the run page's SSE stream
        with httpx.stream("GET", f"{url}/api/runs/{run.id}/events", timeout=None) as response:
            listening.set()
            for line in response.iter_lines():
                if line.startswith("data:") and '"train_loss"' in line:
                    epoch = orjson.loads(line[5:])["epoch"]
                    seen_at.setdefault(epoch, time.perf_counter())
                    if epoch == epochs:
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listening.wait(30)
    for epoch in range(1, epochs + 1):
        for _ in range(steps):  # masks change between epochs (RigL drops and regrows)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(32, 256)), torch.randint(0, 10, (32,))).backward()
            optimizer.step()
        start = time.perf_counter()
        logged_at[epoch] = start
        run.log(epoch=epoch, train_loss=0.5, test_loss=0.6, test_acc=0.9, lr=0.01, epoch_seconds=1.0)
        log_seconds.append(time.perf_counter() - start)
        time.sleep(0.3)  # let the sender flush this epoch on its own, as it does during a real epoch
    run.finish()
    listener.join(timeout=30)
    sender_module.Sender._process = original  # type: ignore[method-assign]
    latency = sorted(seen_at[e] - logged_at[e] for e in seen_at)
    assert run.id is not None and not run.offline, "the run should have reached the API"
    return {"log_call": statistics.median(log_seconds), "log_call_p95": sorted(log_seconds)[int(0.95 * epochs) - 1],
            "sender_cpu": sum(sender_cpu) / epochs, "seen": len(latency),
            "browser_p50": statistics.median(latency) if latency else float("nan"),
            "browser_p95": latency[max(0, int(0.95 * len(latency)) - 1)] if latency else float("nan")}


def synthetic_record(epoch: int) -> dict[str, Any]:
    """12 run metrics + 20 layers × (sparsity, pruned, regrown, threshold) = 92 scalars, no masks."""
    layers = [{"name": f"layer{i}.weight", "shape": [256, 256], "sparsity": 0.9 - i * 0.001, "pruned": 100 + i,
               "regrown": 90 + i, "threshold": 0.01 * (i + 1)} for i in range(20)]
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.9, "test_loss": 1.1 / epoch, "test_acc": 0.89,
            "lr": 0.1, "sparsity": 0.9, "target_sparsity": 0.9, "nonzero": 131_000, "total": 1_310_000,
            "epoch_seconds": 1.0, "samples_per_s": 60_000.0, "layers": layers}


def write_spool(root: Path, epochs: int) -> Path:
    from prunescope.sdk import spool as spooling

    lease = "b" * 43
    path = root / spooling.run_dir_name("bench-sync", lease)
    path.mkdir(parents=True)
    spooling.write_meta(path, {"name": "bench-sync", "tags": [], "config": {}, "lease": lease, "epochs": epochs,
                               "run_id": None})
    lines = [spooling.line(spooling.EPOCH, orjson.dumps(synthetic_record(e))) for e in range(1, epochs + 1)]
    lines.append(spooling.line(spooling.FINISH, orjson.dumps({"status": "completed"})))
    (path / spooling.RECORDS).write_bytes(b"".join(lines))
    return path


def sync_cost(url: str, epochs: int, home: Path) -> dict[str, float]:
    from prunescope.sdk import spool as spooling

    in_process = write_spool(home / "spool-a", epochs)
    start = time.perf_counter()
    [result] = spooling.sync(in_process, url, TOKEN)
    sync_seconds = time.perf_counter() - start
    assert result.epochs == epochs
    command = write_spool(home / "spool-b", epochs)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prunescope.cli", "--api", url, "--token", TOKEN, "sync", str(command)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    command_seconds = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import prunescope.cli"], check=True, cwd=ROOT)
    startup = time.perf_counter() - start
    with httpx.Client(base_url=url, timeout=60) as http:
        stored = len(http.get(f"/api/runs/{result.run_id}/epochs").json()["items"])
    assert stored == epochs
    return {"sync": sync_seconds, "command": command_seconds, "startup": startup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="epochs logged with watch (20-layer model)")
    parser.add_argument("--sync-epochs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdk-bench-") as tmp:
        home = Path(tmp)
        proc, url = start_api(home / "api")
        try:
            log = log_cost(url, args.epochs, home)
            sync = sync_cost(url, args.sync_epochs, home)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    load = os.getloadavg()[0]
    print(f"# tracking SDK (load average {load:.1f})")
    print("| figure | measured | target |")
    print("| --- | --- | --- |")
    print(f"| `run.log` with `watch`, 20 layers (1.25 M weights): the call, median / p95 | "
          f"{log['log_call'] * 1e3:.2f} / {log['log_call_p95'] * 1e3:.2f} ms | |")
    print(f"| the same + sender thread CPU (masks, JSON, HTTP), per epoch | "
          f"{(log['log_call'] + log['sender_cpu']) * 1e3:.2f} ms = "
          f"{(log['log_call'] + log['sender_cpu']) * 100:.2f} % of a 1 s epoch | ≤ 2 % |")
    print(f"| `run.log` → SSE client (a browser's stream), p50 / p95 over {log['seen']:.0f} epochs | "
          f"{log['browser_p50'] * 1e3:.0f} / {log['browser_p95'] * 1e3:.0f} ms | p95 ≤ 500 ms |")
    print(f"| sync of {args.sync_epochs} spooled epochs × 92 scalars, in process | {sync['sync']:.2f} s | ≤ 2 s |")
    print(f"| `prunescope sync DIR` command (incl. {sync['startup']:.2f} s interpreter start) | "
          f"{sync['command']:.2f} s | |")


if __name__ == "__main__":
    main()
