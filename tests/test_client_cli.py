"""The Python client and the CLI against a live API server (uvicorn in a thread; a simulated worker reports)."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn

from backend.app import create_app
from prunescope import cli
from prunescope.client import ApiError, Client
from prunescope.config import Settings
from prunescope.contract.worker_api import LEASE_HEADER
from prunescope.services import free_port

WORKER = {"Authorization": "Bearer worker-secret"}
TOKEN = "api-secret"


def config(name: str = "quick", epochs: int = 3) -> dict[str, Any]:
    return {"name": name, "tags": ["cli"], "dataset": {"name": "digits"}, "training": {"epochs": epochs},
            "pruning": {"target_sparsity": 0.5, "schedule": {"kind": "linear", "start_epoch": 1, "end_epoch": epochs}}}


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module, with an API token so that writes must carry it."""
    home = tmp_path_factory.mktemp("client-cli")
    settings = Settings(home=home, worker_token="worker-secret", redis_url="redis://127.0.0.1:1/0", api_token=TOKEN)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, start_dispatcher=False), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, token=TOKEN) as api:
        yield api


def simulate_worker(api_url: str, run_id: int, epochs: int, *, acc: float = 0.9, delay: float = 0.0) -> None:
    """Claim the run and report its epochs and a completed finish, as a worker does over HTTP."""
    with httpx.Client(base_url=api_url, headers=WORKER, timeout=10) as http:
        time.sleep(delay)
        answer = http.post(f"/api/worker/runs/{run_id}/start", json={"worker": "sim"}).json()
        assert answer["proceed"]
        http.headers[LEASE_HEADER] = answer["lease"]  # every later call for the run carries its lease
        for epoch in range(1, epochs + 1):
            http.post(f"/api/worker/runs/{run_id}/epochs", json={
                "worker": "sim", "epoch": epoch, "train_loss": 1.0 / epoch, "test_acc": acc, "sparsity": 0.5,
                "layers": [{"name": "fc1.weight", "shape": [4, 4], "sparsity": 0.5}]}).raise_for_status()
            time.sleep(delay / 4)
        http.post(f"/api/worker/runs/{run_id}/finish", json={
            "worker": "sim", "status": "completed",
            "summary": {"final_sparsity": 0.5, "final_test_acc": acc}}).raise_for_status()


def in_background(target: Any, *args: Any, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def test_client_submits_waits_reads_exports_patches_and_deletes(client: Client, api_url: str) -> None:
    run = client.submit(config("lifecycle"))
    assert run["status"] == "queued"
    worker = in_background(simulate_worker, api_url, run["id"], 3, delay=0.2)
    done = client.wait(run["id"], timeout=20, poll=0.1)
    worker.join()
    assert done["status"] == "completed" and done["epochs_done"] == 3
    assert [e["epoch"] for e in client.epochs(run["id"])] == [1, 2, 3]
    columns = client.epoch_columns(run["id"])
    assert columns["columns"]["epoch"] == [1, 2, 3] and list(columns["layers"]) == ["fc1.weight"]
    assert len(columns["layers"]["fc1.weight"]["sparsity"]) == 3
    frame = client.epochs_frame(run["id"])
    assert list(frame["epoch"]) == [1, 2, 3] and "test_acc" in frame.columns
    csv = pd.read_csv(io.BytesIO(client.export(run["id"], "csv")))
    assert list(csv["layer"]) == ["fc1.weight"] * 3
    exported = json.loads(client.export(run["id"], "json"))
    assert exported["run"]["id"] == run["id"] and len(exported["epochs"]) == 3
    assert client.metrics(run["id"], ["test_acc"])["series"]["test_acc"]["y"] == [0.9, 0.9, 0.9]
    assert client.patch(run["id"], name="renamed", tags=["keep"])["name"] == "renamed"
    assert client.runs(tag="keep")["total"] == 1
    client.delete(run["id"])
    with pytest.raises(ApiError, match="404"):
        client.run(run["id"])


def test_wait_times_out_and_cancel_and_delete_explain_themselves(client: Client) -> None:
    run = client.submit(config("never-started"))
    with pytest.raises(TimeoutError, match="still queued"):
        client.wait(run["id"], timeout=0.3, poll=0.1)
    with pytest.raises(ApiError, match="cancel it first"):
        client.delete(run["id"])
    assert client.cancel(run["id"])["status"] == "cancelled"
    with pytest.raises(ApiError, match="409"):
        client.cancel(run["id"])


def test_client_sweep_creates_runs_and_reports_progress(client: Client) -> None:
    sweep = client.sweep("client-sweep", config(), {"training.seed": [0, 1], "pruning.target_sparsity": [0.5, 0.8]})
    assert sweep["runs_total"] == 4
    status = client.sweep_status(sweep["id"])
    assert status["status_counts"] == {"queued": 4}
    assert any(s["id"] == sweep["id"] for s in client.sweeps()["items"])
    with pytest.raises(ApiError, match="combination"):
        client.sweep("bad", config(), {"training.epochs": [0]})


def test_writes_without_the_token_are_refused_with_a_clear_message(api_url: str) -> None:
    with Client(api_url) as anonymous:
        with pytest.raises(ApiError, match=r"401.*Bearer"):
            anonymous.submit(config())
        assert anonymous.runs()["total"] >= 0  # reads stay open


def test_cli_submit_follow_prints_a_progress_line_per_epoch(api_url: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config("followed", epochs=4)))

    def worker_for_the_new_run() -> None:
        with Client(api_url) as reader:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                page = reader.runs(q="followed", status="queued")
                if page["items"]:
                    simulate_worker(api_url, page["items"][0]["id"], 4, acc=0.95, delay=0.2)
                    return
                time.sleep(0.05)

    worker = in_background(worker_for_the_new_run)
    code = cli.main(["--api", api_url, "--token", TOKEN, "submit", str(path), "--follow"])
    worker.join()
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert "[" + "#" * 20 + "]" in lines[-1]
    assert "loss 0.2500" in lines[-1] and "acc 0.9500" in lines[-1] and "sparsity 0.5000" in lines[-1]
    assert "status: completed" in out


def test_cli_runs_show_export_cancel_and_delete(api_url: str, client: Client, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = client.submit(config("cli-table"))
    simulate_worker(api_url, run["id"], 3, acc=0.875)
    base = ["--api", api_url, "--token", TOKEN]
    assert cli.main([*base, "runs", "--sort=-id", "--limit", "5"]) == 0
    table = capsys.readouterr().out
    assert "cli-table" in table and "0.8750" in table and "magnitude/unstructured" in table
    assert cli.main([*base, "show", str(run["id"])]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "cli-table"
    target = tmp_path / "out.csv"
    assert cli.main([*base, "export", str(run["id"]), "--format", "csv", "-o", str(target)]) == 0
    assert len(pd.read_csv(target)) == 3
    assert cli.main([*base, "export", str(run["id"]), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["epochs"]) == 3
    queued = client.submit(config("to-cancel"))
    assert cli.main([*base, "cancel", str(queued["id"])]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert cli.main([*base, "delete", str(run["id"])]) == 0
    assert cli.main([*base, "show", str(run["id"])]) == 1
    assert "404" in capsys.readouterr().err


def test_cli_sweep_follow_reports_until_every_run_finished(api_url: str, client: Client, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"name": "cli-sweep", "base": config(epochs=2), "grid": {"training.seed": [0, 1]}}))

    def finish_the_sweep() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs = client.runs(q="cli-sweep", status="queued")["items"]
            if len(runs) == 2:
                for acc, run in zip((0.8, 0.9), sorted(runs, key=lambda r: r["id"]), strict=True):
                    simulate_worker(api_url, run["id"], 2, acc=acc, delay=0.2)
                return
            time.sleep(0.05)

    worker = in_background(finish_the_sweep)
    code = cli.main(["--api", api_url, "--token", TOKEN, "sweep", str(path), "--follow", "--interval", "0.1"])
    worker.join()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 runs queued" in out
    assert "2/2 finished" in out
    assert "best: run" in out and "test acc 0.9000" in out


def test_cli_says_what_to_do_when_the_server_is_unreachable_or_the_input_is_bad(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], api_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["--api", dead, "runs"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the prunescope API" in err and "--api" in err
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "x", "training": {"epochs": 0}}))
    assert cli.main(["--api", api_url, "--token", TOKEN, "submit", str(path)]) == 1
    assert "training.epochs" in capsys.readouterr().err
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"name": "x"}))
    with pytest.raises(SystemExit, match="needs base, grid"):
        cli.main(["--api", api_url, "sweep", str(sweep)])


@pytest.mark.parametrize(("variable", "value", "why"), [
    ("PRUNESCOPE_REPORT_INTERVAL", "-1", "greater than or equal to 0"),
    ("PRUNESCOPE_PORT", "eighty", "valid integer"),
])
def test_a_bad_setting_is_named_with_its_reason_and_exit_status_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        variable: str, value: str, why: str) -> None:
    from prunescope.config import get_settings

    monkeypatch.setenv("PRUNESCOPE_HOME", str(tmp_path))
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        assert cli.main(["api"]) == 2  # refused before anything starts: no traceback
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert f"prunescope: {variable}='{value}': " in err and why in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("content", "why"), [
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "cannot be read as a config"),
    (b'{"name": "x", "training": {"seed": ' + b"9" * 5000 + b"}}", "cannot be read as a config"),
    # JSON's non-standard constants and numbers beyond a double: httpx refused them with a traceback at submit.
    (b'{"training": {"epochs": NaN}}', "NaN is not a number JSON allows"),
    (b'{"training": {"lr": -Infinity}}', "-Infinity is not a number JSON allows"),
    (b'{"training": {"lr": 1e400}}', "1e400 is beyond the largest number"),
])
def test_a_config_file_python_cannot_read_is_one_line_not_a_traceback(tmp_path: Path, content: bytes,
                                                                      why: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    for command in (["train", str(path)], ["submit", str(path)], ["sweep", str(path)]):
        with pytest.raises(SystemExit, match=why):
            cli.main(command)


def test_cli_pages_refuses_unknown_sweep_keys_and_explains_unwritable_exports_and_foreign_answers(
        api_url: str, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("page-a", "page-b", "page-c"):
        client.submit(config(name))
    base = ["--api", api_url, "--token", TOKEN]
    assert cli.main([*base, "runs", "--sort=-id", "--limit", "2", "--offset", "1"]) == 0
    out = capsys.readouterr().out
    assert "page-b" in out and "page-a" in out and "page-c" not in out and "(2–3 of " in out
    run_id = client.runs(q="page-a")["items"][0]["id"]
    assert cli.main([*base, "export", str(run_id), "-o", str(tmp_path / "missing" / "x.csv")]) == 1
    assert "cannot write" in capsys.readouterr().err  # was a FileNotFoundError traceback
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"name": "x", "base": config("s"), "grid": {"training.seed": [1]}, "grdi": {}}))
    with pytest.raises(SystemExit, match="has unknown keys grdi"):
        cli.main([*base, "sweep", str(sweep)])
    with serve_html() as url:  # something else answers at --api: an HTML page with status 200
        assert cli.main(["--api", url, "show", "1"]) == 1
    assert "not the prunescope API's JSON (text/html" in capsys.readouterr().err


def test_up_refuses_a_port_something_already_listens_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from prunescope.config import get_settings

    with serve_html() as url:
        monkeypatch.setenv("PRUNESCOPE_HOME", str(tmp_path))
        monkeypatch.setenv("PRUNESCOPE_PORT", url.rsplit(":", 1)[1])
        get_settings.cache_clear()
        try:
            assert cli.main(["up"]) == 1  # it had said "dashboard at ..." for the other server
        finally:
            get_settings.cache_clear()
    assert "is in use" in capsys.readouterr().err


@contextlib.contextmanager
def serve_html() -> Iterator[str]:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>not an API</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_api_and_token_may_follow_the_command(api_url: str, client: Client, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # `prunescope submit --api URL run.json` was "unrecognized arguments": they were read before the command only.
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config("after-command")))
    assert cli.main(["submit", "--api", api_url, "--token", TOKEN, str(path)]) == 0
    assert client.runs(q="after-command")["total"] == 1
    capsys.readouterr()
    assert cli.main(["--api", "http://127.0.0.1:9", "runs", "--api", api_url, "--limit", "5"]) == 0  # after wins
    assert "after-command" in capsys.readouterr().out


def test_cli_export_into_a_closed_pipe_ends_quietly(api_url: str, client: Client,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # `prunescope export 1 | head -2` printed "prunescope: cannot write None: Broken pipe".
    run = client.submit(config("piped", epochs=1))

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            return devnull.fileno()

    with open("/dev/null", "w") as devnull:
        monkeypatch.setattr("sys.stdout", ClosedPipe())
        code = cli.main(["--api", api_url, "--token", TOKEN, "export", str(run["id"]), "--format", "csv"])
    assert code == 141
    assert "cannot write" not in capsys.readouterr().err


def test_cli_train_says_what_is_wrong_with_a_config_in_one_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # pydantic's own text: several lines, each error with "For further information visit https://...".
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"trainingg": {"epochs": 2}, "training": {"epochs": 0}}))
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "https://" not in err
    assert f"prunescope: invalid config {path}: " in err
    assert "trainingg: Extra inputs are not permitted" in err and "training.epochs: " in err


def test_cli_runs_searches_by_text_and_says_when_a_page_is_past_the_end(api_url: str, client: Client,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # No text filter (the dashboard's Search had none in the CLI); a page past the end read "(none of 27 from 100000)".
    client.submit(config("needle-run", epochs=1))
    client.submit(config("haystack-run", epochs=1))
    base = ["--api", api_url, "--token", TOKEN]
    assert cli.main([*base, "runs", "--search", "needle"]) == 0
    table = capsys.readouterr().out
    assert "needle-run" in table and "haystack-run" not in table
    assert cli.main([*base, "runs", "-q", "needle", "--offset", "100000"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(no runs from 100001: 1 in all)"
    assert cli.main([*base, "runs", "-q", "no-run-has-this-name"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(no runs)"
