"""/docs lists what every write can be refused with, and its bodies carry examples that validate."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from prunescope.contract.tracking import TrackedBatch, TrackedFinish, TrackedRunCreate
from prunescope.contract.worker_api import EpochReport, FinishReport, Heartbeat, StartRequest


def _responses(schema: dict[str, Any], path: str, method: str) -> set[str]:
    return set(schema["paths"][path][method]["responses"])


def test_every_write_documents_its_shared_refusals(client: TestClient) -> None:
    # A worker endpoint listed 200/422 only, though a missing lease is a 409 and a missing token a 401.
    schema = client.get("/openapi.json").json()
    assert {"401", "404", "409", "413"} <= _responses(schema, "/api/worker/runs/{run_id}/epochs", "post")
    assert {"401", "413"} <= _responses(schema, "/api/worker/heartbeat", "post")
    start = _responses(schema, "/api/worker/runs/{run_id}/start", "post")
    assert "404" in start and "409" not in start  # start takes no lease: it hands one out
    assert {"401", "403", "413", "415"} <= _responses(schema, "/api/runs", "post")
    assert {"401", "403", "415"} <= _responses(schema, "/api/runs/{run_id}", "patch")
    assert {"401", "403", "415"} <= _responses(schema, "/api/sweeps", "post")
    assert {"401", "409"} <= _responses(schema, "/api/tracked-runs/{run_id}/batch", "post")
    assert "401" not in _responses(schema, "/api/runs", "get")  # reads need no token
    put = schema["paths"]["/api/worker/runs/{run_id}/artifacts/{name}"]["put"]
    assert "application/octet-stream" in put["requestBody"]["content"]


@pytest.mark.parametrize("model", [StartRequest, EpochReport, FinishReport, Heartbeat, TrackedRunCreate, TrackedBatch,
                                   TrackedFinish])
def test_request_bodies_carry_examples_that_validate(model: type[BaseModel]) -> None:
    examples = model.model_json_schema().get("examples")
    assert examples, model.__name__
    for example in examples:
        model.model_validate(example)
