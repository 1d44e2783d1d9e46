"""The layers hold: the API loads without torch, the engine without servers, modules stay small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from backend.app import create_app
from prunescope.config import Settings

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def _loaded_after(statement: str, modules: list[str]) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_api_leaves_torch_unloaded() -> None:
    assert _loaded_after("import backend.app; backend.app.create_app()", ["torch", "worker", "sklearn"]) == []


def test_the_engine_imports_no_server_queue_or_http_library() -> None:
    statement = ("import worker.engine, worker.engine.training, worker.engine.pruning, worker.engine.networks, "
                 "worker.engine.datasets")
    assert _loaded_after(statement, ["celery", "fastapi", "httpx", "sqlalchemy", "backend", "starlette"]) == []


def test_the_contract_imports_only_pydantic_and_the_standard_library() -> None:
    assert _loaded_after("import prunescope.contract", ["numpy", "torch", "fastapi", "sqlalchemy", "celery",
                                                        "httpx", "backend", "worker"]) == []


def test_no_module_is_over_400_lines_outside_migrations_and_tests() -> None:
    long = []
    for package in ("prunescope", "backend", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                long.append(f"{path.relative_to(ROOT)}: {lines}")
    assert not long, long


def test_options_lists_are_the_contracts_aliases(settings: Settings) -> None:
    from prunescope.contract.config import option_lists

    with TestClient(create_app(settings.model_copy(update={"allowed_hosts": "testserver"}),
                               start_dispatcher=False)) as client:
        options = client.get("/api/options").json()
    for name, values in option_lists().items():
        assert options[name] == values, name
