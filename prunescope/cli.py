"""The `prunescope` command: up, api, worker, train, submit, runs, show, cancel."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

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
    submit.add_argument("--follow", action="store_true", help="stream epochs until the run finishes")
    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--status")
    runs.add_argument("--limit", type=int, default=20)
    show = sub.add_parser("show", help="one run as JSON")
    show.add_argument("id", type=int)
    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("id", type=int)

    args = parser.parse_args(argv)
    handler = {"up": cmd_up, "api": cmd_api, "worker": cmd_worker, "train": cmd_train, "submit": cmd_submit,
               "runs": cmd_runs, "show": cmd_show, "cancel": cmd_cancel}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _client(args: argparse.Namespace) -> Any:
    from prunescope.client import Client

    settings = get_settings()
    return Client(args.api or settings.api_url, token=args.token or settings.api_token)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SystemExit(f"{path} must hold a JSON object (a run config)")
    return doc


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    from prunescope import services

    settings = get_settings()
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
        # Worker and API first, Redis last, so nothing loses its broker while shutting down.
        services.stop(procs[::-1])
        if redis is not None:
            services.stop([redis])


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.app import create_app

    settings = get_settings()
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

    from backend.runconfig import RunConfig

    try:
        config = RunConfig.model_validate(_read_config(args.config))
    except ValidationError as exc:
        print(f"invalid config {args.config}:\n{exc}", file=sys.stderr)
        return 2
    from worker.train import train_main

    device = args.device or ("cpu" if config.device == "auto" else config.device)
    return train_main(config.model_dump(mode="json"), data_dir=get_settings().resolved_data_dir, device=device,
                      out=sys.stdout)


def cmd_submit(args: argparse.Namespace) -> int:
    from prunescope.client import ApiError

    client = _client(args)
    try:
        run = client.submit(_read_config(args.config))
        print(f"run {run['id']} {run['status']}: {client.api_url}/runs/{run['id']}", flush=True)
        if not args.follow:
            return 0
        for kind, data in client.events(run["id"]):
            if kind == "epoch":
                print(f"epoch {data['epoch']}/{run['epochs_total']}  loss {data.get('train_loss', 0):.4f}  "
                      f"test acc {data.get('test_acc') or 0:.4f}  sparsity {data.get('sparsity') or 0:.4f}", flush=True)
            elif kind == "status":
                print(f"status: {data['status']}" + (f" ({data['reason']})" if data.get("reason") else ""), flush=True)
        final = client.run(run["id"])
        return 0 if final["status"] == "completed" else 1
    except ApiError as exc:
        print(f"prunescope: {exc}", file=sys.stderr)
        return 1


def cmd_runs(args: argparse.Namespace) -> int:
    from prunescope.client import ApiError

    try:
        page = _client(args).runs(status=args.status, limit=args.limit)
    except ApiError as exc:
        print(f"prunescope: {exc}", file=sys.stderr)
        return 1
    print(f"{'id':>5}  {'status':<10} {'epochs':>7}  {'sparsity':>8}  {'best acc':>8}  name")
    for run in page["items"]:
        sparsity = f"{run['sparsity']:.4f}" if run["sparsity"] is not None else "-"
        best = f"{run['best_test_acc']:.4f}" if run["best_test_acc"] is not None else "-"
        epochs = f"{run['epochs_done']}/{run['epochs_total']}"
        print(f"{run['id']:>5}  {run['status']:<10} {epochs:>7}  {sparsity:>8}  {best:>8}  {run['name']}")
    print(f"({len(page['items'])} of {page['total']})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from prunescope.client import ApiError

    try:
        print(json.dumps(_client(args).run(args.id), indent=2))
    except ApiError as exc:
        print(f"prunescope: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from prunescope.client import ApiError

    try:
        run = _client(args).cancel(args.id)
    except ApiError as exc:
        print(f"prunescope: {exc}", file=sys.stderr)
        return 1
    print(f"run {run['id']}: {run['status']}" + (" (cancel requested)" if run["cancel_requested"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
