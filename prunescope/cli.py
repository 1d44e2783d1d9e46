"""The `prunescope` command: up, api, worker, train, submit, runs, show, cancel, delete, export, sweep, sync."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from prunescope.config import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prunescope", description=__doc__)
    parser.add_argument("--api", help="API URL (default: PRUNESCOPE_API_URL or http://127.0.0.1:8000)")
    parser.add_argument("--token", help="API token for write endpoints (default: PRUNESCOPE_API_TOKEN)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="API + one CPU worker + embedded Redis on this machine; Ctrl-C stops all")
    api = sub.add_parser("api", help="serve the API and dashboard")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    worker = sub.add_parser("worker", help="a Celery worker that trains runs")
    worker.add_argument("--queues", default="cpu", help="comma-separated: cpu, gpu")
    train = sub.add_parser("train", help="run a config in-process (no server); one JSON line per epoch")
    train.add_argument("config", type=Path)
    train.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: the config's device")
    submit = sub.add_parser("submit", help="submit a config to the API")
    submit.add_argument("config", type=Path)
    submit.add_argument("--follow", action="store_true", help="show each epoch until the run finishes")
    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--status")
    runs.add_argument("--tag")
    runs.add_argument("--strategy")
    runs.add_argument("--search", "-q", dest="q", help="text in the name or strategy, as the dashboard's Search")
    runs.add_argument("--sweep", type=int, dest="sweep_id")
    runs.add_argument("--sort", default="-created_at", help="a column, `-` first for descending: --sort=-test_acc")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--offset", type=int, default=0, help="runs to skip: pages through a long list")
    show = sub.add_parser("show", help="one run as JSON")
    show.add_argument("id", type=int)
    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("id", type=int)
    delete = sub.add_parser("delete", help="delete a finished run and everything it recorded")
    delete.add_argument("id", type=int)
    export = sub.add_parser("export", help="a run's epochs as CSV or JSON, or its masks as npz")
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=["csv", "json", "npz"], default="csv")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout; npz: a file here)")
    export.add_argument("--epoch", type=int, help="npz: the epoch (default: the newest)")
    sweep = sub.add_parser("sweep", help='create a sweep from a JSON file {"name", "base", "grid"}')
    sweep.add_argument("file", type=Path)
    sweep.add_argument("--follow", action="store_true", help="show progress until every run has finished")
    sweep.add_argument("--interval", type=float, default=2.0, help="--follow: seconds between updates")
    sync = sub.add_parser("sync", help="upload tracked runs spooled offline (a run's spool dir, or a dir of them)")
    sync.add_argument("dir", type=Path, nargs="?", help="default: PRUNESCOPE_HOME/spool")
    sync.add_argument("--force", action="store_true", help="upload again spools already uploaded (idempotent)")

    # `prunescope submit --api URL run.json` works as `prunescope --api URL submit run.json` does: given after the
    # command, they override; left out there, the values before it stand (SUPPRESS sets nothing).
    for command in (submit, runs, show, cancel, delete, export, sweep, sync):
        command.add_argument("--api", default=argparse.SUPPRESS, help="API URL (also before the command)")
        command.add_argument("--token", default=argparse.SUPPRESS, help="API token (also before the command)")

    args = parser.parse_args(argv)
    handler = {"up": cmd_up, "api": cmd_api, "worker": cmd_worker, "train": cmd_train, "submit": cmd_submit,
               "runs": cmd_runs, "show": cmd_show, "cancel": cmd_cancel, "delete": cmd_delete,
               "export": cmd_export, "sweep": cmd_sweep, "sync": cmd_sync}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # A bad PRUNESCOPE_* variable: say which and why, not a traceback from wherever settings were first read.
        for problem in exc.errors():
            name = "PRUNESCOPE_" + "_".join(str(part) for part in problem["loc"]).upper()
            print(f"prunescope: {name}={problem.get('input')!r}: {problem['msg']}", file=sys.stderr)
        return 2


def _client(args: argparse.Namespace) -> Any:
    from prunescope.client import Client

    settings = get_settings()
    return Client(args.api or settings.api_url, token=args.token or settings.api_token)


def _not_finite(text: str) -> Any:
    raise ValueError(f"{text} is not a number JSON allows (the API refuses it)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: beyond a double
        raise ValueError(f"{text} is beyond the largest number a config can hold")
    return value


def _read_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_finite, parse_float=_finite_float)
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SystemExit(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path} is not JSON: {exc}") from exc
    except (RecursionError, ValueError) as exc:  # nested too deeply; an integer of more than 4300 digits
        raise SystemExit(f"{path} is JSON that cannot be read as a config: {str(exc) or type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise SystemExit(f"{path} must hold a JSON object (a run config)")
    return doc


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    from prunescope import services

    settings = get_settings()
    if services.port_answers(settings.host, settings.port):
        # Waiting for "our" API would have found that one, and a worker would have reported to it.
        print(f"prunescope up: {settings.host}:{settings.port} is in use (another `prunescope up`?); stop it, or "
              "choose another port with PRUNESCOPE_PORT", file=sys.stderr)
        return 1
    env = {"PRUNESCOPE_WORKER_TOKEN": settings.resolved_worker_token(),
           "PRUNESCOPE_API_URL": f"http://{settings.host}:{settings.port}"}
    redis = None
    if not settings.redis_url:
        port = services.free_port()
        redis = services.start_redis(port, settings.home / "redis")
        env["PRUNESCOPE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        print(f"prunescope: embedded Redis on 127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    procs = []
    try:
        api = services.spawn(["api"], env)
        procs.append(api)
        services.wait_for_port(settings.port, timeout=60, proc=api)
        procs.append(services.spawn(["worker", "--queues", "cpu"], env))
        print(f"prunescope: dashboard at http://{settings.host}:{settings.port}  (Ctrl-C stops everything)", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("prunescope: a component exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nprunescope: stopping", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The worker first (it hands its run back through the API), then the API, then Redis.
        for proc in procs[::-1]:
            services.stop([proc], timeout=30)
        if redis is not None:
            services.stop([redis])


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.app import create_app

    settings = get_settings()
    problem = settings.exposure_problem(args.host)
    if problem:
        print(f"prunescope api: refusing to start: {problem}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), host=args.host or settings.host, port=args.port or settings.port,
                log_level="info", timeout_graceful_shutdown=3)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = set(queues) - {"cpu", "gpu"}
    if unknown or not queues:
        raise SystemExit(f"--queues takes cpu and/or gpu, not {sorted(unknown) or queues}")
    from worker.tasks import app

    # solo pool: the run trains in this process, beside its heartbeat thread; one run at a time.
    app.worker_main(["worker", "--queues", ",".join(queues), "--pool", "solo", "--concurrency", "1",
                     "--loglevel", "INFO", "--hostname", f"{'-'.join(queues)}@%h-{os.getpid()}",
                     "--without-gossip", "--without-mingle"])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from prunescope.contract.config import RunConfig

    try:
        config = RunConfig.model_validate(_read_config(args.config))
    except ValidationError as exc:
        # One line, as `submit` says it (pydantic's own text ran over several lines, with its documentation URLs).
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {' '.join(error['msg'].split())}"
                             for error in exc.errors(include_url=False))
        print(f"prunescope: invalid config {args.config}: {problems}", file=sys.stderr)
        return 2
    from worker.engine.training import train_main

    device = args.device or ("cpu" if config.device == "auto" else config.device)
    return train_main(config, data_dir=get_settings().resolved_data_dir, device=device, out=sys.stdout)


def api_command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Commands that talk to the API: an ApiError (unreachable, 4xx) becomes one line on stderr and exit 1."""

    @wraps(func)
    def run(args: argparse.Namespace) -> int:
        from prunescope.client import ApiError

        try:
            return func(args)
        except ApiError as exc:
            print(f"prunescope: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:  # `prunescope export 1 | head -2`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush writes nowhere
            return 141  # 128 + SIGPIPE, as a program the pipe ended
        except OSError as exc:  # writing an export or a model where no file can be written
            print(f"prunescope: cannot write {exc.filename or 'the output'}: {exc.strerror}", file=sys.stderr)
            return 1

    return run


def progress_bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total) if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def epoch_line(data: dict[str, Any], total: int) -> str:
    """One line per epoch: `epoch 3/10 [######--------------] loss 0.1234  acc 0.9500  sparsity 0.9000`."""
    epoch = int(data.get("epoch", 0))
    return (f"epoch {epoch}/{total} {progress_bar(epoch, total)} loss {_number(data.get('train_loss'))}  "
            f"acc {_number(data.get('test_acc'))}  sparsity {_number(data.get('sparsity'))}")


@api_command
def cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    run = client.submit(_read_config(args.config))
    print(f"run {run['id']} {run['status']}: {client.api_url}/runs/{run['id']}", flush=True)
    if not args.follow:
        return 0
    for kind, data in client.events(run["id"]):
        if kind == "epoch":
            print(epoch_line(data, run["epochs_total"]), flush=True)
        elif kind == "status":
            print(f"status: {data['status']}" + (f" ({data['reason']})" if data.get("reason") else ""), flush=True)
    final = client.run(run["id"])
    print(f"run {final['id']} {final['status']}: test acc {_number(final['test_acc'])}, "
          f"sparsity {_number(final['sparsity'])}" + (f"; error: {final['error']}" if final.get("error") else ""))
    return 0 if final["status"] == "completed" else 1


@api_command
def cmd_runs(args: argparse.Namespace) -> int:
    page = _client(args).runs(status=args.status, tag=args.tag, strategy=args.strategy, q=args.q,
                              sweep_id=args.sweep_id, sort=args.sort, limit=args.limit, offset=args.offset or None)
    print(f"{'id':>5}  {'status':<10} {'epochs':>7}  {'sparsity':>8}  {'test acc':>8}  {'strategy':<32} name")
    for run in page["items"]:
        epochs = f"{run['epochs_done']}/{run['epochs_total']}"
        print(f"{run['id']:>5}  {run['status']:<10} {epochs:>7}  {_number(run['sparsity']):>8}  "
              f"{_number(run['test_acc']):>8}  {run['strategy'][:32]:<32} {run['name']}")
    first = args.offset + 1
    print(f"({first}–{args.offset + len(page['items'])} of {page['total']})" if page["items"]
          else f"(no runs from {first}: {page['total']} in all)" if args.offset and page["total"] else "(no runs)")
    return 0


@api_command
def cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(_client(args).run(args.id), indent=2))
    return 0


@api_command
def cmd_cancel(args: argparse.Namespace) -> int:
    run = _client(args).cancel(args.id)
    print(f"run {run['id']}: {run['status']}" + (" (cancel requested)" if run["cancel_requested"] else ""))
    return 0


@api_command
def cmd_delete(args: argparse.Namespace) -> int:
    _client(args).delete(args.id)
    print(f"run {args.id} deleted")
    return 0


@api_command
def cmd_export(args: argparse.Namespace) -> int:
    output: Path | None = args.output
    if output is None and args.format == "npz":
        output = Path(f"prunescope-run-{args.id}-masks.npz")  # binary: never to a terminal
    content = _client(args).export(args.id, args.format, path=output, epoch=args.epoch)
    if output is None:
        sys.stdout.write(content.decode())
        sys.stdout.flush()
    else:
        print(f"run {args.id}: {args.format} written to {output} ({len(content)} bytes)", file=sys.stderr)
    return 0


def sweep_line(sweep: dict[str, Any]) -> str:
    counts = sweep["status_counts"]
    done = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled"))
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    best = f"; best run {sweep['best_run_id']}" if sweep.get("best_run_id") else ""
    return (f"sweep {sweep['id']} {progress_bar(done, sweep['runs_total'])} {done}/{sweep['runs_total']} finished "
            f"({states}), {sweep['progress']:.0%} of epochs{best}")


@api_command
def cmd_sweep(args: argparse.Namespace) -> int:
    doc = _read_config(args.file)
    missing = [key for key in ("name", "base", "grid") if key not in doc]
    unknown = sorted(set(doc) - {"name", "base", "grid"})
    if missing or unknown:
        problem = f"needs {', '.join(missing)}" if missing else f"has unknown keys {', '.join(unknown)}"
        raise SystemExit(f"{args.file} {problem}: "
                         '{"name": ..., "base": {run config}, "grid": {"pruning.target_sparsity": [0.9, 0.95]}}')
    client = _client(args)
    sweep = client.sweep(doc["name"], doc["base"], doc["grid"])
    print(f"sweep {sweep['id']} {sweep['name']}: {sweep['runs_total']} runs queued "
          f"({', '.join(str(r['id']) for r in sweep['runs'])})", flush=True)
    if not args.follow:
        return 0
    last = ""
    while True:
        line = sweep_line(sweep)
        if line != last:
            print(line, flush=True)
            last = line
        counts = sweep["status_counts"]
        if not counts.get("queued") and not counts.get("running"):
            break
        time.sleep(args.interval)
        sweep = client.sweep_status(sweep["id"])
    best = next((r for r in sweep["runs"] if r["id"] == sweep.get("best_run_id")), None)
    if best is not None:
        print(f"best: run {best['id']} {best['name']}: test acc {_number(best['test_acc'])}, "
              f"sparsity {_number(best['sparsity'])}")
    return 0 if sweep["status_counts"].get("completed", 0) == sweep["runs_total"] else 1


def cmd_sync(args: argparse.Namespace) -> int:
    """Upload spooled tracked runs; a second sync of the same spool duplicates nothing."""
    from prunescope.sdk.spool import sync
    from prunescope.sdk.transport import ApiUnreachable, TrackingError

    settings = get_settings()
    try:
        results = sync(args.dir or settings.home / "spool", args.api or settings.api_url,
                       args.token or settings.api_token, force=args.force)
    except (ApiUnreachable, TrackingError, OSError, ValueError) as exc:
        print(f"prunescope sync: {exc}", file=sys.stderr)
        return 1
    for r in results:
        if r.error is not None:  # one line per bad spool; the good ones were still uploaded
            print(f"prunescope sync: {r.path}: {' '.join(r.error.split())}", file=sys.stderr)
            continue
        what = "already uploaded" if r.skipped else f"{r.epochs} epochs, {r.points} points" + (
            f", {r.finished}" if r.finished else "")
        print(f"{r.path}: run {r.run_id} ({what})")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
