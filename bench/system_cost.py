"""The whole system's cost (issue 13, item 6): every figure side by side, from one run on one machine.

    .venv/bin/python bench/system_cost.py                                          # the full benchmark, ~10 min
    .venv/bin/python bench/system_cost.py --runs 2000 --sweep-runs 4 --clients 10  # a quick smoke run

1. Sweep overhead: `--sweep-runs` short runs (LeNet-300-100 on digits, gmp-like cubic magnitude pruning, varied seed
   and target; 1a at batch 64, 0.06-0.2 s of training a run, depending on the machine; 1b the same at
   `--long-batch-size` 8, more steps an epoch; `--sweep-epochs` for longer runs) submitted to the real stack — a
   private Redis, `prunescope api` and `--sweep-parallel` (2) `prunescope worker --queues cpu` — as one sweep
   (`POST /api/sweeps` of a seed × target grid, as the dashboard's Sweeps page submits it; `--sweep-submit runs`:
   one `POST /api/runs` a run, as a script's loop would) — timed from the first submit to the last run's
   `finished_at`; against the same configs as a bare script with the same parallelism
   (as many processes, each calling `worker.engine.training.run_training` in-process on its share), timed from the
   first process's start to the last one's end. With 2 on a 2-core machine the API shares the workers' cores;
   `--sweep-parallel 1` leaves it one. Both sides get OMP_NUM_THREADS=1 and pay the torch import inside their window
   (a worker imports torch when its first run starts). `--sweep-repeats` alternating pairs, each side on fresh
   processes; the pair with the median ratio is printed. Target: stack ≤ 1.10× bare. Beside the wall times, the CPU
   seconds each side used in its window (the bare processes; the API, the workers and Redis), which other jobs on a
   shared machine disturb far less than wall time. The stack's CPU window ends when a poll of the sweep's completed
   runs (once a second: each poll costs the API ~6 ms of CPU, which the bare side never pays) sees them all.
1c. `--parts fast`: one run of `--fast-epochs` (300) one-step epochs of 8-9 ms, `--fast-repeats` times through
   the stack on one warm worker against the same run in a bare process, with the report requests the API logged
   for each (a worker sends epoch reports at most once per PRUNESCOPE_REPORT_INTERVAL: faster epochs go together).
2. Submit → first epoch: on the idle, warm stack, 5 runs one after another; POST /api/runs until the first
   `epoch` event on the run's SSE stream, beside the training time of that epoch (its `epoch_seconds`).
3. `--clients` concurrent SSE clients on one run: the workers are stopped, a simulated worker claims the
   run (POST /api/worker/runs/{id}/start, then its lease on every call) and posts `--sse-epochs` reports
   with LeNet-300-100 masks 0.3 s apart; report → client latency over all clients and epochs.
   Target: p95 ≤ 500 ms.
4. The runs list at `--runs` runs on SQLite and PostgreSQL (a database of its own, dropped afterwards),
   p50/p95 of three queries, and the API's resident memory at that size (bench/system_runslist.py).
   Target: p95 ≤ 50 ms.

1d. `--parts warm` (not in the default set): CPU milliseconds a warm run costs the workers, the API and Redis
   (sweeps of twice `--sweep-runs`, after a warm-up), against the same runs trained warm in the bench's process.

Prints tables only (no assertions). `--parts sweep,warm,fast,first,sse,list` picks parts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from prunescope import services  # noqa: E402

TOKEN = "system-cost-worker-token"
SWEEP_TAG = "system-cost-sweep"
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # two processes share 2 cores fairly


TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9)


def grid_shape(count: int) -> tuple[int, int]:
    """(seeds, targets) with seeds x targets == count: as many of the 5 targets as divide `count` (a sweep's grid
    is a full product), so any count is one sweep — 20 runs are 4 seeds x 5 targets, 7 runs 7 seeds x 1."""
    targets = max(t for t in range(1, len(TARGETS) + 1) if count % t == 0)
    return count // targets, targets


def sweep_configs(count: int, epochs: int, batch_size: int = 64, tag: str = SWEEP_TAG) -> list[dict[str, Any]]:
    """`count` short runs: same model and data, seeds and target sparsities varied as a sweep varies them (run i:
    seed i // t, the (i % t)-th target, t from `grid_shape`, which is `sweep_grid`'s order)."""
    targets = grid_shape(count)[1]
    return [{"name": f"system-cost-{i}", "tags": [tag], "device": "cpu",
             "model": {"name": "lenet300_100"}, "dataset": {"name": "digits"},
             "training": {"epochs": epochs, "batch_size": batch_size, "lr": 0.05, "seed": i // targets},
             "pruning": {"criterion": "magnitude", "target_sparsity": TARGETS[i % targets],
                         "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": max(1, epochs - 1),
                                      "every_steps": 5}}}
            for i in range(count)]


def sweep_grid(count: int) -> dict[str, list[Any]]:
    """The grid whose combinations, the last path varying fastest, are `sweep_configs(count)`."""
    seeds, targets = grid_shape(count)
    return {"training.seed": list(range(seeds)), "pruning.target_sparsity": list(TARGETS[:targets])}


def bare_shard(shard: int, shards: int, count: int, epochs: int, batch_size: int) -> None:
    """One bare process: its share of the sweep, in-process, one after another; prints its window as JSON."""
    began, cpu_began = time.time(), time.process_time()  # before torch is imported: a worker's window holds it too
    from prunescope.contract import parse_run_config
    from worker.engine.training import run_training

    imported = time.time()
    data_dir = Path(tempfile.mkdtemp(prefix="prunescope-bare-"))
    runs = []
    for config in sweep_configs(count, epochs, batch_size)[shard::shards]:
        started = time.perf_counter()
        run_training(parse_run_config(config), data_dir=data_dir, device="cpu")
        runs.append(time.perf_counter() - started)
    print(json.dumps({"began": began, "imported": imported, "ended": time.time(), "runs": runs,
                      "cpu": time.process_time() - cpu_began}))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_sweep(count: int, epochs: int, batch_size: int, shards: int = 2) -> dict[str, float]:
    """The bare sweep's wall time and CPU seconds, its longest torch-and-engine import, and runs' median times."""
    cpu_before = children_cpu()
    procs = [subprocess.Popen([sys.executable, __file__, "--bare-shard", str(k), "--sweep-parallel", str(shards),
                               "--sweep-runs", str(count),
                               "--sweep-epochs", str(epochs), "--sweep-batch-size", str(batch_size)],
                              env={**os.environ, **ENV}, stdout=subprocess.PIPE)
             for k in range(shards)]
    windows = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a bare sweep process failed with exit code {proc.returncode}")
        windows.append(json.loads(out.decode().strip().splitlines()[-1]))
    return {"wall": max(w["ended"] for w in windows) - min(w["began"] for w in windows),
            # CPU inside each process's window, like the stack's: the processes' whole lives (`cpu_life`) also hold
            # the interpreter's start, this script's imports and the exit, which the stack's window does not.
            "cpu": sum(w["cpu"] for w in windows), "cpu_life": children_cpu() - cpu_before,
            "import": max(w["imported"] - w["began"] for w in windows),
            "first_run": statistics.median(w["runs"][0] for w in windows if w["runs"]),
            # Later runs: a process's first run also pays for scikit-learn's import and the data's first load.
            "run": statistics.median([r for w in windows for r in w["runs"][1:]] or [float("nan")])}


class Stack:
    """A private Redis, the API and two workers, as `prunescope up` would start them, on free ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        redis_port, api_port = services.free_port(), services.free_port()
        self.base = f"http://127.0.0.1:{api_port}"
        self.env = {**os.environ, **ENV, "PRUNESCOPE_HOME": str(workdir / "home"),
                    "PRUNESCOPE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "PRUNESCOPE_API_URL": self.base,
                    "PRUNESCOPE_WORKER_TOKEN": TOKEN, "PRUNESCOPE_PORT": str(api_port)}
        self.redis = services.start_redis(redis_port, workdir / "redis")
        self.api = self._spawn(["api"], "api.log")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(base_url=self.base, timeout=60)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.http.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.api.poll() is not None:
                raise SystemExit(f"the API did not start:\n{self.logs()}")
            time.sleep(0.2)

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        handle = (self.workdir / log).open("ab")
        return subprocess.Popen([sys.executable, "-m", "prunescope.cli", *args], env=self.env, stdout=handle,
                                stderr=subprocess.STDOUT)

    def start_workers(self, count: int) -> None:
        new = [self._spawn(["worker", "--queues", "cpu"], f"worker-{k}.log") for k in range(count)]
        self.workers += new
        # Ready when each has sent a heartbeat (a worker is named host:pid; stopped ones stay listed a while).
        pids = {f":{proc.pid}" for proc in new}
        deadline = time.monotonic() + 120
        while not pids <= {w["name"][w["name"].rfind(":"):] for w in self.http.get("/api/workers").json()["items"]}:
            if time.monotonic() > deadline:
                raise SystemExit(f"the workers did not come online:\n{self.logs()}")
            time.sleep(0.2)

    def stop_workers(self) -> None:
        services.stop(self.workers, timeout=30)
        self.workers = []

    def submit_sweep(self, name: str, base: dict[str, Any], grid: dict[str, list[Any]]) -> None:
        response = self.http.post("/api/sweeps", json={"name": name, "base": base, "grid": grid})
        if response.status_code != 201:
            raise SystemExit(f"sweep refused: {response.status_code} {response.text}")

    def submit(self, config: dict[str, Any]) -> int:
        response = self.http.post("/api/runs", json=config)
        if response.status_code != 201:
            raise SystemExit(f"submit refused: {response.status_code} {response.text}")
        return int(response.json()["id"])

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.workdir.glob("*.log")))

    def close(self) -> None:
        self.http.close()
        services.stop([*self.workers, self.api], timeout=30)
        services.stop([self.redis])


def stack_cpu(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by the API, the workers and Redis."""
    procs = {"api": stack.api, "redis": stack.redis, **{f"worker{k}": w for k, w in enumerate(stack.workers)}}
    return {name: cpu_seconds(proc.pid) for name, proc in procs.items()}


def utc_seconds(stamp: str) -> float:
    """An API timestamp as epoch seconds (a stamp without a zone is UTC, as the API stores it)."""
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def stack_sweep(stack: Stack, count: int, epochs: int, batch_size: int = 64,
                cpu: dict[str, float] | None = None, submit: str = "runs") -> float:
    """Submit the sweep and wait until every run is completed; the seconds from the first submit to the last
    run's `finished_at` (the API's clock, which is this machine's). `cpu`, when given, receives each stack
    process's CPU seconds from the first submit until the wait saw the sweep done. `submit`: "sweep", one
    `POST /api/sweeps` of the grid (as the dashboard's Sweeps page submits one: every run in one transaction,
    queued by one dispatcher tick), or "runs", one `POST /api/runs` each (a script's loop).

    The end is read from the runs, not from when the wait notices it, so the wait can poll slowly: a runs-list
    poll costs the API about 6 ms of CPU (every 0.1 s: 0.06 CPU-seconds a second, measured with idle workers,
    3 % of this 2-core machine, which the bare loop never pays), so it polls once a second and looks for failed
    runs every fifth poll. The CPU window runs up to a second past the end (an idle stack uses under 0.01
    CPU-seconds a second)."""
    tag = f"{SWEEP_TAG}-{uuid.uuid4().hex[:8]}"  # this sweep's runs alone
    configs = sweep_configs(count, epochs, batch_size, tag)
    grid = sweep_grid(count) if submit == "sweep" else None
    cpu_before = stack_cpu(stack)
    started = time.time()
    if grid is not None:
        base = {**configs[0], "name": "system-cost"}
        stack.submit_sweep(tag, base, grid)
    else:
        for config in configs:
            stack.submit(config)
    polls = 0
    while True:
        time.sleep(1.0)
        done = stack.http.get("/api/runs", params={"tag": tag, "status": "completed", "limit": count}).json()
        if done["total"] == count:
            if cpu is not None:
                cpu.update({name: used - cpu_before[name] for name, used in stack_cpu(stack).items()})
            return max(utc_seconds(run["finished_at"]) for run in done["items"]) - started
        polls += 1
        if polls % 5:
            continue
        bad = stack.http.get("/api/runs", params={"tag": tag, "status": ["failed", "cancelled"]}).json()
        if bad["items"]:
            run = bad["items"][0]
            raise SystemExit(f"run {run['id']} ended {run['status']}: {run.get('error')}\n{stack.logs()}")


def sweep_pairs(stack: Stack, count: int, epochs: int, repeats: int, batch_size: int = 64,
                parallel: int = 2, submit: str = "runs"
                ) -> tuple[dict[str, float], float, dict[str, float], list[float], list[float]]:
    """Bare sweep, then stack sweep on freshly started workers, `repeats` times; the pair of the median ratio.

    Alternating pairs on fresh processes keep both sides equally cold and let a load spike from other
    processes on the machine spoil one pair rather than one side.
    """
    pairs = []
    for repeat in range(1, repeats + 1):
        stack.stop_workers()  # the last pair's workers stay up, warm, for the parts that follow
        print(f"pair {repeat}/{repeats}: bare sweep of {count} runs in {parallel} processes ...", flush=True)
        bare = bare_sweep(count, epochs, batch_size, parallel)
        print(f"pair {repeat}/{repeats}: the same through API, Redis and {parallel} workers ...", flush=True)
        stack.start_workers(parallel)
        cpu: dict[str, float] = {}
        through = stack_sweep(stack, count, epochs, batch_size, cpu, submit)
        used = sum(cpu.values())
        print(f"   bare {bare['wall']:.1f} s, stack {through:.1f} s: {through / bare['wall']:.2f}x; CPU seconds "
              f"bare {bare['cpu']:.1f} (whole processes {bare['cpu_life']:.1f}), stack {used:.1f}: "
              f"{used / bare['cpu']:.2f}x", flush=True)
        pairs.append((bare, through, cpu))
    walls = [through / bare["wall"] for bare, through, _ in pairs]
    cpus = [sum(cpu.values()) / bare["cpu"] for bare, _, cpu in pairs]
    pairs.sort(key=lambda pair: pair[1] / pair[0]["wall"])
    return (*pairs[len(pairs) // 2], walls, cpus)


def first_epochs(stack: Stack, submissions: int, epochs: int) -> list[tuple[float, float]]:
    """(submit → first `epoch` event, that epoch's own training seconds) for runs submitted one at a time."""
    samples = []
    for i, config in enumerate(sweep_configs(submissions, epochs)):
        config = {**config, "name": f"first-epoch-{i}", "tags": ["system-cost-first"]}
        started = time.perf_counter()
        run_id = stack.submit(config)
        first: tuple[float, float] | None = None
        with stack.http.stream("GET", f"/api/runs/{run_id}/events", timeout=httpx.Timeout(60, read=300)) as events:
            kind = None
            for line in events.iter_lines():  # read to the end: the next run starts on an idle stack
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "epoch" and first is None:
                    first = (time.perf_counter() - started, float(json.loads(line[5:]).get("epoch_seconds") or 0))
        if first is None:
            raise SystemExit(f"run {run_id} ended without an epoch:\n{stack.logs()}")
        samples.append(first)
    return samples


def sse_fan_out(stack: Stack, clients: int, epochs: int, interval: float) -> dict[str, Any]:
    from system_fanout import fan_out  # imports numpy and the worker's mask encoder only for this part

    config = {**sweep_configs(1, epochs)[0], "name": "system-cost-sse", "tags": ["system-cost-sse"]}
    return fan_out(stack.base, TOKEN, stack.submit(config), clients, epochs, interval)


def fast_config(epochs: int) -> dict[str, Any]:
    """A run of many short epochs: LeNet-300-100 on digits in one step an epoch (8-9 ms here), pruned every step."""
    return {"name": "system-cost-fast", "tags": ["system-cost-fast"], "device": "cpu",
            "model": {"name": "lenet300_100"}, "dataset": {"name": "digits"},
            "training": {"epochs": epochs, "batch_size": 2048, "lr": 0.05, "seed": 0},
            "pruning": {"criterion": "magnitude", "target_sparsity": 0.9,
                        "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": epochs - 1, "every_steps": 1}}}


def bare_fast(epochs: int) -> None:
    """In a process of its own: the fast run once to warm up (imports, data), then timed; prints its seconds."""
    from prunescope.contract import parse_run_config
    from worker.engine.training import run_training

    data_dir = Path(tempfile.mkdtemp(prefix="prunescope-bare-"))
    config = parse_run_config(fast_config(epochs))
    run_training(config, data_dir=data_dir, device="cpu")
    started = time.perf_counter()
    run_training(config, data_dir=data_dir, device="cpu")
    print(json.dumps({"run": time.perf_counter() - started}))


def warm_costs(stack: Stack, runs: int, epochs: int, repeats: int) -> dict[str, Any]:
    """CPU milliseconds a warm run costs: each stack process's over `repeats` sweeps of `runs` (after a warm-up
    sweep: torch imported, data loaded), against the same runs trained warm in this process."""
    stack.stop_workers()
    stack.start_workers(2)
    stack_sweep(stack, 4, epochs, 64, {}, "sweep")
    stacked = []
    for _ in range(repeats):
        cpu: dict[str, float] = {}
        stack_sweep(stack, runs, epochs, 64, cpu, "sweep")
        stacked.append({name: 1e3 * used / runs for name, used in cpu.items()})
    import torch

    from prunescope.contract import parse_run_config
    from worker.engine.training import run_training

    torch.set_num_threads(1)
    data_dir = Path(tempfile.mkdtemp(prefix="prunescope-warm-"))
    configs = [parse_run_config(config) for config in sweep_configs(runs, epochs, 64)]
    for config in configs[:3]:
        run_training(config, data_dir=data_dir, device="cpu")
    bare = []
    for _ in range(repeats):
        began = time.process_time()
        for config in configs:
            run_training(config, data_dir=data_dir, device="cpu")
        bare.append(1e3 * (time.process_time() - began) / runs)
    return {"stack": stacked, "bare": bare}


def fast_epochs(stack: Stack, epochs: int, repeats: int) -> dict[str, Any]:
    """One run of `epochs` short epochs, `repeats` times one after another through the stack (after one to warm
    the worker), against the same run in a bare process: each run's wall time (claim to `finished_at`) and the
    report requests the API logged for it (one per epoch, or fewer when epochs end within the report interval)."""
    bare = subprocess.run([sys.executable, __file__, "--bare-fast", str(epochs)], env={**os.environ, **ENV},
                          stdout=subprocess.PIPE, check=True)
    bare_seconds = json.loads(bare.stdout.decode().strip().splitlines()[-1])["run"]
    if not stack.workers:
        stack.start_workers(1)
    log = stack.workdir / "api.log"
    walls, requests = [], []
    for repeat in range(repeats + 1):
        logged = log.read_text(errors="replace")
        before = logged.count("/epochs HTTP/") + logged.count("/epochs/batch HTTP/")
        run_id = stack.submit({**fast_config(epochs), "name": f"system-cost-fast-{repeat}"})
        while (run := stack.http.get(f"/api/runs/{run_id}").json())["status"] not in ("completed", "failed",
                                                                                       "cancelled"):
            time.sleep(0.5)
        if run["status"] != "completed":
            raise SystemExit(f"run {run_id} ended {run['status']}: {run.get('error')}\n{stack.logs()}")
        time.sleep(0.2)  # the access log line of the last report
        logged = log.read_text(errors="replace")
        if repeat:  # the first warms the worker (imports, data)
            walls.append(utc_seconds(run["finished_at"]) - utc_seconds(run["started_at"]))
            requests.append(logged.count("/epochs HTTP/") + logged.count("/epochs/batch HTTP/") - before)
    return {"bare": bare_seconds, "walls": walls, "requests": requests}


def say(lines: list[str]) -> None:
    print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the database for the runs list")
    parser.add_argument("--sweep-runs", type=int, default=20)
    parser.add_argument("--sweep-epochs", type=int, default=4)
    parser.add_argument("--sweep-batch-size", type=int, default=64)
    parser.add_argument("--sweep-repeats", type=int, default=3, help="alternating bare/stack pairs")
    parser.add_argument("--sweep-submit", choices=("sweep", "runs"), default="sweep",
                        help="the stack's sweep as one POST /api/sweeps (a seed x target grid) or one POST /api/runs "
                             "a run")
    parser.add_argument("--sweep-parallel", type=int, default=2,
                        help="bare processes on one side, workers on the other (1: a core left for the API)")
    parser.add_argument("--long-batch-size", type=int, default=8,
                        help="also the same sweep at this batch size (more steps an epoch: runs of 2-3 s); 0: skip")
    parser.add_argument("--clients", type=int, default=100, help="concurrent SSE clients on one run")
    parser.add_argument("--sse-epochs", type=int, default=30)
    parser.add_argument("--submissions", type=int, default=5, help="runs timed from submit to first epoch")
    parser.add_argument("--requests", type=int, default=200, help="requests per runs-list query")
    parser.add_argument("--backends", default="sqlite,postgresql", help="databases for the runs list")
    parser.add_argument("--parts", default="sweep,fast,first,sse,list")
    parser.add_argument("--fast-epochs", type=int, default=300, help="epochs of the run of short epochs")
    parser.add_argument("--fast-repeats", type=int, default=4, help="timed runs of short epochs through the stack")
    parser.add_argument("--bare-shard", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bare-fast", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_fast is not None:
        bare_fast(args.bare_fast)
        return 0
    if args.bare_shard is not None:
        bare_shard(args.bare_shard, args.sweep_parallel, args.sweep_runs, args.sweep_epochs, args.sweep_batch_size)
        return 0
    parts = {p.strip() for p in args.parts.split(",")}
    os.environ.update(ENV)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    if parts & {"sweep", "warm", "fast", "first", "sse"}:
        workdir = Path(tempfile.mkdtemp(prefix="prunescope-system-"))
        print(f"stack logs: {workdir}/*.log", flush=True)
        stack = Stack(workdir)
        try:
            if "sweep" in parts:
                sizes = [args.sweep_batch_size] + ([args.long_batch_size] if args.long_batch_size else [])
                results = [(size, *sweep_pairs(stack, args.sweep_runs, args.sweep_epochs, args.sweep_repeats, size,
                                               args.sweep_parallel, args.sweep_submit)) for size in sizes]
                submitted = "one POST /api/sweeps" if args.sweep_submit == "sweep" else "one POST /api/runs a run"
                for n, (size, bare, through, cpu, walls, cpus) in enumerate(results):
                    say([f"\n1{'ab'[n]}. sweep of {args.sweep_runs} runs x {args.sweep_epochs} epochs, batch {size} "
                         f"(LeNet-300-100, digits), {args.sweep_parallel}-way parallel, submitted as {submitted}  "
                         "(target ratio ≤ 1.10)",
                         f"   bare script  {bare['wall']:7.1f} s  (importing torch and the engine "
                         f"{bare['import']:.1f} s; a first run {bare['first_run']:.2f} s, "
                         f"later runs {bare['run']:.2f} s p50)",
                         f"   full stack   {through:7.1f} s  (the stack adds "
                         f"{(through - bare['wall']) * args.sweep_parallel / args.sweep_runs:+.2f} s per run per "
                         "worker)",
                         f"   ratio        {through / bare['wall']:7.2f}x  (median of {args.sweep_repeats} "
                         "alternating pairs, each on fresh processes; pairs "
                         + " / ".join(f"{r:.2f}" for r in walls) + ")",
                         f"   CPU seconds  bare {bare['cpu']:.1f}, stack {sum(cpu.values()):.1f} in that pair ("
                         + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + ")",
                         f"   CPU ratio    {statistics.median(cpus):7.2f}x  (median of the pairs; pairs "
                         + " / ".join(f"{r:.2f}" for r in cpus)
                         + "; other jobs on the machine disturb it far less than wall time)"])
            if "warm" in parts:
                print(f"warm runs: {args.sweep_repeats} sweeps of {2 * args.sweep_runs} ...", flush=True)
                warm = warm_costs(stack, 2 * args.sweep_runs, args.sweep_epochs, args.sweep_repeats)
                lines = [f"\n1d. CPU ms a warm run ({args.sweep_epochs} epochs, batch 64; {2 * args.sweep_runs}-run "
                         "sweeps after a warm-up; the stack's window includes up to 1 s of idle polling)"]
                for k, costs in enumerate(warm["stack"]):
                    workers = sum(v for name, v in costs.items() if name.startswith("worker"))
                    lines.append(f"   sweep {k + 1}: workers {workers:.1f}, api {costs['api']:.1f}, "
                                 f"redis {costs['redis']:.1f}")
                lines.append("   bare, in this process: " + " / ".join(f"{b:.1f}" for b in warm["bare"]))
                say(lines)
            if "fast" in parts:
                print(f"a run of {args.fast_epochs} short epochs, {args.fast_repeats} times ...", flush=True)
                fast = fast_epochs(stack, args.fast_epochs, args.fast_repeats)
                wall = statistics.median(fast["walls"])
                say([f"\n1c. one run of {args.fast_epochs} epochs of {1e3 * fast['bare'] / args.fast_epochs:.1f} ms "
                     "(LeNet-300-100 on digits, one step an epoch) through the stack vs a bare process",
                     f"   bare {fast['bare']:.2f} s; stack {wall:.2f} s median of "
                     + " / ".join(f"{w:.2f}" for w in fast["walls"]) + f": {wall / fast['bare']:.2f}x",
                     f"   report requests a run: {' / '.join(map(str, fast['requests']))} for {args.fast_epochs} "
                     "epochs (PRUNESCOPE_REPORT_INTERVAL: epochs that end faster go together)"])
            if "first" in parts:
                if not stack.workers:
                    stack.start_workers(2)
                stack_sweep(stack, 2, 1)  # warm-up, untimed: each worker has imported torch and loaded data
                print(f"submit → first epoch: {args.submissions} runs one at a time ...", flush=True)
                samples = first_epochs(stack, args.submissions, args.sweep_epochs)
                waits = sorted(s[0] for s in samples)
                say([f"\n2. submit → first epoch event, {len(samples)} runs on the idle stack",
                     f"   p50 {statistics.median(waits):.2f} s, max {waits[-1]:.2f} s "
                     f"(the epoch itself trains {statistics.median(s[1] for s in samples):.2f} s p50)"])
            if "sse" in parts:
                stack.stop_workers()  # the simulated worker claims the run; no real one may take it
                print(f"SSE fan-out: {args.clients} clients, {args.sse_epochs} reports ...", flush=True)
                sse = sse_fan_out(stack, args.clients, args.sse_epochs, 0.3)
                say([f"\n3. {sse['clients']} SSE clients on one run, {sse['epochs']} reports 0.3 s apart "
                     "(target p95 ≤ 500 ms)",
                     f"   events received {sse['events']} of {sse['expected']}; report → client p50 "
                     f"{sse['p50_ms']:.0f} ms, p95 {sse['p95_ms']:.0f} ms, max {sse['max_ms']:.0f} ms"])
                if sse["client_errors"]:
                    say([f"   client errors: {sse['client_errors']}"])
        finally:
            stack.close()
    if "list" in parts:
        from system_runslist import measure, print_table

        workdir = Path(tempfile.mkdtemp(prefix="prunescope-runslist-"))
        print_table([measure(b.strip(), args.runs, args.requests, workdir) for b in args.backends.split(",")])
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
