"""The API offers what online workers advertise, and refuses (422) runs nothing can run before queueing them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend import capabilities
from tests.backend.conftest import WORKER, digits_config


@pytest.fixture(autouse=True)
def no_offers() -> Iterator[None]:
    capabilities.forget_all()
    yield
    capabilities.forget_all()


def _beat(client: TestClient, worker: str = "w1", **offer: Any) -> None:
    response = client.post("/api/worker/heartbeat", json={"worker": worker, **offer}, headers=WORKER)
    assert response.status_code == 200, response.text


def _errors(response: Any) -> dict[tuple, str]:
    assert response.status_code == 422, response.text
    return {tuple(e["loc"]): e["msg"] for e in response.json()["detail"]}


def test_options_list_builtins_then_what_online_workers_offer(client: TestClient) -> None:
    before = client.get("/api/options").json()
    assert "resnet20" in before["models"] and "cifar100" in before["datasets"] and before["plugin_models"] == {}
    _beat(client, models={"tiny_net": ["1.weight", "3.weight"]}, datasets=["scans"], plugin_errors=["x: boom"])
    options = client.get("/api/options").json()
    assert options["models"][-1] == "tiny_net" and options["models"][0] == "lenet300_100"
    assert options["datasets"][-1] == "scans"
    assert options["plugin_models"] == {"tiny_net": ["1.weight", "3.weight"]}
    assert options["plugin_errors"] == ["w1: x: boom"]


def test_a_run_naming_an_unknown_model_or_dataset_is_a_422_listing_what_is_known(client: TestClient) -> None:
    errors = _errors(client.post("/api/runs", json=digits_config(model={"name": "tiny_net"},
                                                                  dataset={"name": "scans"})))
    assert "tiny_net" in errors[("body", "model", "name")] and "resnet20" in errors[("body", "model", "name")]
    assert "cifar100" in errors[("body", "dataset", "name")]
    assert client.get("/api/runs").json()["total"] == 0  # nothing half-written


def test_a_run_on_a_plugin_an_online_worker_offers_is_queued(client: TestClient) -> None:
    _beat(client, models={"tiny_net": ["1.weight", "3.weight"]}, datasets=["scans"])
    config = digits_config(model={"name": "tiny_net", "params": {"width": 8}}, dataset={"name": "scans"},
                           pruning={"target_sparsity": 0.5, "layers": {"include": ["1.*"]}})
    created = client.post("/api/runs", json=config)
    assert created.status_code == 201, created.text
    unparameterised = {**config, "model": {"name": "tiny_net"}}
    errors = _errors(client.post("/api/runs", json={**unparameterised, "pruning": {
        "target_sparsity": 0.5, "layers": {"include": ["conv*"]}}}))
    assert "1.weight, 3.weight" in errors[("body", "pruning", "layers", "include")]
    # The offered names are build()'s without params: with params (a depth, say) the layers may differ, so the
    # worker, which builds the model, is the one to check them.
    with_params = client.post("/api/runs", json={**config, "pruning": {"target_sparsity": 0.5,
                                                                       "layers": {"include": ["7.*"]}}})
    assert with_params.status_code == 201, with_params.text


def test_a_plugin_that_needs_params_is_offered_with_its_signature_and_runs_are_checked(client: TestClient) -> None:
    signature = {"params": [{"name": "width", "required": True, "default": None},
                            {"name": "depth", "required": False, "default": 2}], "any": False}
    _beat(client, models={"wide_net": []}, datasets=["scans"], model_params={"wide_net": signature},
          dataset_params={"scans": {"params": [], "any": True}})
    options = client.get("/api/options").json()
    assert options["plugin_model_params"] == {"wide_net": signature}
    assert options["plugin_dataset_params"] == {"scans": {"params": [], "any": True}}
    config = digits_config(model={"name": "wide_net"}, dataset={"name": "scans"}, pruning={"target_sparsity": 0.5})
    errors = _errors(client.post("/api/runs", json=config))
    assert errors == {("body", "model", "params"): "model 'wide_net' needs model.params width (its build() has no "
                                                   "default for them)"}  # and no "selects no prunable layer"
    typo = _errors(client.post("/api/runs", json={**config, "model": {"name": "wide_net", "params": {
        "width": 8, "dpth": 3}}}))
    assert typo[("body", "model", "params", "dpth")] == ("model 'wide_net' takes no parameter 'dpth': it takes "
                                                         "width, depth")
    assert client.get("/api/runs").json()["total"] == 0
    good = client.post("/api/runs", json={**config, "model": {"name": "wide_net", "params": {"width": 8}}})
    assert good.status_code == 201, good.text


def test_a_worker_beating_an_api_older_than_signatures_drops_them_and_beats_on() -> None:
    import httpx

    from prunescope.contract.worker_api import Heartbeat
    from worker.api_client import WorkerApi

    bodies: list[dict] = []

    def old_api(request: httpx.Request) -> httpx.Response:
        body = __import__("json").loads(request.content)
        bodies.append(body)
        extra = [{"type": "extra_forbidden", "loc": ["body", key], "msg": "Extra inputs are not permitted"}
                 for key in ("model_params", "dataset_params") if key in body]
        return httpx.Response(422, json={"detail": extra}) if extra else httpx.Response(200, json={"cancel": False})

    api = WorkerApi("http://api", "t", transport=httpx.MockTransport(old_api))
    beat = Heartbeat(worker="w", models={"m": []}, model_params={"m": {"params": [], "any": True}})
    api.heartbeat(beat, None)
    api.heartbeat(beat, None)
    assert ["model_params" in body for body in bodies] == [True, False, False]  # learnt once, then left out
    assert bodies[-1]["models"] == {"m": []}


def test_layer_patterns_that_match_no_layer_are_a_422_at_the_field(client: TestClient) -> None:
    bad = digits_config(model={"name": "mlp"}, pruning={"target_sparsity": 0.5, "layers": {"include": ["conv*"]}})
    msg = _errors(client.post("/api/runs", json=bad))[("body", "pruning", "layers", "include")]
    assert "fc1.weight, fc2.weight, fc3.weight" in msg
    excluded = digits_config(pruning={"target_sparsity": 0.5, "layers": {"include": ["fc*"], "exclude": ["*"]}})
    assert ("body", "pruning", "layers", "exclude") in _errors(client.post("/api/runs", json=excluded))
    good = digits_config(model={"name": "resnet20", "width_multiplier": 0.25},
                         pruning={"target_sparsity": 0.5, "layers": {"include": ["layer2.*"]}})
    assert client.post("/api/runs", json=good).status_code == 201


def test_a_worker_gone_offline_no_longer_offers_its_plugins(client: TestClient, api_settings: Any) -> None:
    from datetime import timedelta

    from backend.tables import Worker, utcnow

    _beat(client, models={"tiny_net": ["fc.weight"]})
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.writing() as session:
        session.get(Worker, "w1").last_heartbeat = utcnow() - timedelta(seconds=api_settings.heartbeat_timeout + 5)
    assert "tiny_net" not in client.get("/api/options").json()["models"]
    refused = client.post("/api/runs", json=digits_config(model={"name": "tiny_net"}))
    assert ("body", "model", "name") in _errors(refused)


@pytest.mark.parametrize("path", ["../etc", "/data", "a/../../b", "~/x"])
def test_image_folder_paths_outside_the_data_dir_are_refused(client: TestClient, path: str) -> None:
    errors = _errors(client.post("/api/runs", json=digits_config(dataset={"name": "image_folder", "path": path})))
    assert ("body", "dataset", "path") in errors
