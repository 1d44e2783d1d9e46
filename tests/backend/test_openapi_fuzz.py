"""The OpenAPI document: complete, browsable offline, and no public endpoint answers 5xx to generated input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from backend.app import create_app
from prunescope.config import Settings
from tests.backend.conftest import WORKER, claim, digits_config

PUBLIC_PATHS = ("/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/cancel", "/api/runs/{run_id}/epochs",
                "/api/runs/{run_id}/metrics", "/api/runs/{run_id}/export", "/api/runs/{run_id}/model",
                "/api/compare", "/api/pareto", "/api/sweeps", "/api/sweeps/{sweep_id}")


def test_docs_page_loads_swagger_ui_from_this_server_only(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    hosts = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert hosts, page.text
    assert all(h.startswith("/") and not h.startswith("//") for h in hosts), hosts
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css"):
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 10_000, asset
    assert client.get("/static/swagger-ui/../../app.py").status_code == 404
    assert client.get("/redoc").status_code in (200, 404)
    assert "cdn" not in client.get("/redoc").text


def test_every_public_endpoint_documents_its_responses_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in PUBLIC_PATHS:
        assert path in spec["paths"], path
        for method, operation in spec["paths"][path].items():
            assert operation.get("summary") and operation.get("description"), (method, path)
            assert "200" in operation["responses"] or "201" in operation["responses"] or "204" in \
                operation["responses"], (method, path)
            if "{" in path:
                assert "404" in operation["responses"], (method, path)
    schemas = spec["components"]["schemas"]
    for name in ("Metrics", "Comparison", "Pareto", "SweepCreate", "SweepDetail", "RunPatch", "RunExport"):
        assert name in schemas, name
    for name in ("Metrics", "Comparison", "Pareto", "SweepCreate", "SweepDetail", "SweepSummary", "RunPatch",
                 "RunList", "RunDetail", "EpochList"):
        assert schemas[name].get("examples"), name
    assert "long format" in spec["paths"]["/api/runs/{run_id}/export"]["get"]["description"]


def test_every_documented_example_is_valid_for_its_model() -> None:
    from backend.results.schemas import Comparison, Metrics, Pareto
    from backend.runs.schemas import EpochList, RunDetail, RunList, RunPatch
    from backend.sweeps.schemas import SweepCreate, SweepDetail, SweepSummary

    for model in (Metrics, Comparison, Pareto, RunList, RunDetail, EpochList, RunPatch, SweepCreate, SweepDetail,
                  SweepSummary):
        examples = model.model_json_schema()["examples"]
        for example in examples:
            model.model_validate(example)


def _seed(settings_: Settings) -> None:
    """A few runs in every state, with epochs and a sweep, so generated ids hit real rows too."""
    with TestClient(create_app(settings_, start_dispatcher=False)) as client:
        ids = [client.post("/api/runs", json=digits_config(name=f"r{i}")).json()["id"] for i in range(4)]
        leased = claim(client, ids[0])
        for epoch in (1, 2, 3):
            client.post(f"/api/worker/runs/{ids[0]}/epochs", headers=leased, json={
                "worker": "w", "epoch": epoch, "test_acc": 0.5, "sparsity": 0.1,
                "layers": [{"name": "fc1.weight", "shape": [2, 2], "sparsity": 0.5}]})
        client.post(f"/api/worker/runs/{ids[0]}/finish", json={"worker": "w", "status": "completed",
                                                                  "summary": {"final_sparsity": 0.1}}, headers=leased)
        claim(client, ids[1])
        client.post(f"/api/runs/{ids[2]}/cancel")
        client.post("/api/sweeps", json={"name": "s", "base": digits_config(), "grid": {"training.seed": [0, 1]}})


@pytest.mark.timeout(120)
def test_generated_requests_never_get_a_server_error(tmp_path: Path, database_url: str) -> None:
    # Both databases: PostgreSQL refuses what SQLite lets by (32-bit ids, NUL bytes in text).
    settings_ = Settings(home=tmp_path / "home", worker_token="worker-secret", redis_url="redis://127.0.0.1:1/0",
                         database_url=database_url, allowed_hosts="localhost,testserver")
    _seed(settings_)
    app = create_app(settings_, start_dispatcher=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    tested = 0
    for operation in operations:
        if operation.path.endswith("/events"):
            continue  # the live stream never ends by itself
        # Worker endpoints are fuzzed with the worker token, so generated bodies get past authentication.
        headers = WORKER if operation.path.startswith("/api/worker") else {}
        tested += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            where = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200}"
            try:
                response = case.call(headers=headers)  # noqa: B023 (called at once, in this iteration)
            except Exception as exc:  # the in-process client re-raises what the app did not handle
                failures.append(f"{where} → {type(exc).__name__}: {exc}")
                return
            if response.status_code >= 500:
                failures.append(f"{where} → {response.status_code} {response.text[:300]}")

        call()
    assert tested >= len(PUBLIC_PATHS)
    assert not failures, "\n".join(failures[:10])
