"""Sweeps: a grid of runs validated and stored together, listed, and followed to their best run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prunescope.contract.worker_api import LEASE_HEADER
from tests.backend.conftest import WORKER, claim, digits_config

BASE = digits_config(name="base", training={"epochs": 4, "batch_size": 64},
                     pruning={"target_sparsity": 0.5, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 3}})
GRID = {"pruning.target_sparsity": [0.9, 0.95], "pruning.recovery.kind": ["none", "splice"], "training.seed": [0, 1]}


def runs_total(client: TestClient) -> int:
    total: int = client.get("/api/runs").json()["total"]
    return total


def test_sweep_creates_one_queued_run_per_combination(client: TestClient) -> None:
    response = client.post("/api/sweeps", json={"name": "dns-grid", "base": BASE, "grid": GRID})
    assert response.status_code == 201, response.text
    sweep = response.json()
    assert sweep["runs_total"] == 8
    assert sweep["status_counts"] == {"queued": 8}
    assert sweep["progress"] == 0.0
    assert sweep["best_run_id"] is None
    configs = [client.get(f"/api/runs/{r['id']}").json()["config"] for r in sweep["runs"]]
    combos = {(c["pruning"]["target_sparsity"], c["pruning"]["recovery"]["kind"], c["training"]["seed"])
              for c in configs}
    assert combos == {(s, k, seed) for s in (0.9, 0.95) for k in ("none", "splice") for seed in (0, 1)}
    assert all(c["training"]["epochs"] == 4 and c["dataset"]["name"] == "digits" for c in configs)
    assert sweep["runs"][0]["name"] == "dns-grid [target_sparsity=0.9 recovery.kind=\"none\" seed=0]"  # not kind=
    assert {r["sweep_id"] for r in sweep["runs"]} == {sweep["id"]}
    listed = client.get("/api/runs", params={"sweep_id": sweep["id"]}).json()
    assert listed["total"] == 8


def test_a_null_pruning_block_is_filled_by_the_grid(client: TestClient) -> None:
    grid = {"pruning.target_sparsity": [0.5], "pruning.schedule.end_epoch": [2]}
    response = client.post("/api/sweeps", json={"name": "from-dense", "base": digits_config(), "grid": grid})
    assert response.status_code == 201, response.text
    assert response.json()["runs"][0]["strategy"] == "magnitude/unstructured"


def test_one_invalid_combination_rejects_the_whole_sweep_naming_it(client: TestClient) -> None:
    grid = {"training.epochs": [4, 2], "pruning.recovery.kind": ["none", "teleport"]}
    response = client.post("/api/sweeps", json={"name": "bad", "base": BASE, "grid": grid})
    assert response.status_code == 422
    detail = response.json()["detail"]
    messages = " | ".join(d["msg"] for d in detail)
    assert "combination 2" in messages and "teleport" in messages  # the bad recovery kind
    assert "pruning.recovery.kind" in messages
    assert "end_epoch" in messages  # epochs=2 is before the schedule's end_epoch=3
    assert any(d.get("combination") == {"training.epochs": 2, "pruning.recovery.kind": "none"} for d in detail)
    assert runs_total(client) == 0
    assert client.get("/api/sweeps").json()["total"] == 0


def test_unknown_fields_oversized_grids_and_bad_paths_are_422(client: TestClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "x", "base": BASE, "grid": {"training.bogus": [1]}}, "bogus"),
        ({"name": "x", "base": BASE, "grid": {"training.seed": list(range(101)), "training.lr": [0.1] * 10}},
         "1010 combinations"),
        ({"name": "x", "base": BASE, "grid": {"training.epochs.deep": [1]}}, "not an object"),
        ({"name": "x", "base": BASE, "grid": {"training..seed": [1]}}, "grid"),
        ({"name": "x", "base": BASE, "grid": {"training.seed": []}}, "grid"),
        ({"name": "x", "base": BASE, "grid": {}}, "grid"),
        ({"name": "", "base": BASE, "grid": {"training.seed": [1]}}, "name"),
        ({"name": "x", "base": BASE, "grid": {"training.seed": [1]}, "extra": 1}, "extra"),
        ({"name": "x", "base": [], "grid": {"training.seed": [1]}}, "base"),
    ]
    for body, needle in cases:
        response = client.post("/api/sweeps", json=body)
        assert response.status_code == 422, (body, response.text)
        assert needle in response.text, (needle, response.text)
    assert runs_total(client) == 0


def test_sweep_detail_follows_progress_and_names_the_best_run(client: TestClient) -> None:
    sweep = client.post("/api/sweeps", json={"name": "s", "base": BASE, "grid": {"training.seed": [0, 1, 2]}}).json()
    first, second, third = (r["id"] for r in sweep["runs"])
    for run_id, acc in ((first, 0.91), (second, 0.95)):
        leased = claim(client, run_id)
        for epoch in range(1, 5):
            body = {"worker": "w", "epoch": epoch, "test_acc": acc, "sparsity": 0.9}
            client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=leased)
        client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w", "status": "completed"}, headers=leased)
    leased = claim(client, third)
    client.post(f"/api/worker/runs/{third}/epochs", json={"worker": "w", "epoch": 1, "test_acc": 0.99}, headers=leased)

    detail = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert detail["status_counts"] == {"completed": 2, "running": 1}
    assert detail["progress"] == 9 / 12
    assert detail["best_run_id"] == second  # the running run's 0.99 does not count yet
    assert [r["epochs_done"] for r in detail["runs"]] == [4, 4, 1]
    assert detail["grid"] == {"training.seed": [0, 1, 2]}
    listed = client.get("/api/sweeps").json()
    assert listed["total"] == 1
    assert listed["items"][0]["progress"] == 9 / 12
    assert client.get("/api/sweeps/999").status_code == 404


def test_creating_a_sweep_wakes_the_dispatcher(client: TestClient) -> None:
    woken: list[bool] = []
    client.app.state.dispatcher.wake = lambda: woken.append(True)  # type: ignore[attr-defined]
    client.post("/api/sweeps", json={"name": "s", "base": BASE, "grid": {"training.seed": [0]}})
    assert woken == [True]
    client.post("/api/sweeps", json={"name": "s", "base": BASE, "grid": {"training.seed": [-1]}})
    assert woken == [True]  # nothing was stored, nothing to dispatch


def test_the_documented_example_creates_its_sweep(client: TestClient) -> None:
    from backend.sweeps.schemas import SweepCreate

    example = SweepCreate.model_json_schema()["examples"][0]
    response = client.post("/api/sweeps", json=example)
    assert response.status_code == 201, response.text
    assert response.json()["runs_total"] == 8


def test_cancelling_a_sweep_stops_its_active_runs_and_keeps_finished_ones(client: TestClient) -> None:
    sweep = client.post("/api/sweeps", json={"name": "s", "base": BASE, "grid": {"training.seed": [0, 1, 2]}}).json()
    done, running, queued = (r["id"] for r in sweep["runs"])
    started = client.post(f"/api/worker/runs/{done}/start", json={"worker": "w"}, headers=WORKER).json()
    # Workers carry their lease once the API hands them one (the worker-API contract's LEASE_HEADER).
    lease = {LEASE_HEADER: started["lease"]} if started.get("lease") else {}
    finished = client.post(f"/api/worker/runs/{done}/finish", json={"worker": "w", "status": "failed", "error": "x"},
                           headers={**WORKER, **lease})
    assert finished.status_code == 204, finished.text
    client.post(f"/api/worker/runs/{running}/start", json={"worker": "w"}, headers=WORKER)

    response = client.post(f"/api/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 200, response.text
    runs = {r["id"]: r for r in response.json()["runs"]}
    assert runs[done]["status"] == "failed"
    assert runs[running]["status"] == "running" and runs[running]["cancel_requested"] is True
    assert runs[queued]["status"] == "cancelled"
    # Cancelling again is harmless: nothing active is left to cancel but the running run's request stands.
    assert client.post(f"/api/sweeps/{sweep['id']}/cancel").status_code == 200
    assert client.post("/api/sweeps/999/cancel").status_code == 404


def test_sweep_combination_whose_layer_patterns_select_nothing_is_refused_whole(client: TestClient) -> None:
    before = runs_total(client)
    grid = {"pruning.layers.include": [["fc*"], ["conv*"]]}
    response = client.post("/api/sweeps", json={"name": "layers", "base": BASE, "grid": grid})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert [e["type"] for e in errors] == ["no_layer_selected"]
    assert errors[0]["loc"] == ["body", "grid", "pruning", "layers", "include"]
    assert "conv*" in errors[0]["msg"] and "fc1.weight" in errors[0]["msg"]
    assert runs_total(client) == before
    assert client.get("/api/sweeps").json()["total"] == 0


@pytest.mark.parametrize("values", [[1e400], [[1e400]], [{"a": -1e400}]])
def test_a_grid_value_that_overflows_to_infinity_is_a_422_not_a_500(client: TestClient, values: list) -> None:
    # The 422 echoed the combination holding inf; JSONResponse refused to encode it: a 500 and a dropped connection.
    body = b'{"name": "s", "base": {}, "grid": {"training.seed": ' + json.dumps(values).replace(
        "Infinity", "1e400").encode() + b"}}"
    response = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "training.seed" in response.text


def _configs(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/api/sweeps", json=body)
    assert response.status_code == 201, response.text
    return [client.get(f"/api/runs/{r['id']}").json()["config"] for r in response.json()["runs"]]


def test_fields_that_hang_on_a_varied_choice_are_left_out_where_they_do_not_apply(client: TestClient) -> None:
    # The form sends a dependent field when any combination needs it; each of these sweeps was a 422 for the
    # combinations it did not apply to.
    nm = _configs(client, {"name": "nm", "base": {**BASE, "pruning": {"target_sparsity": 0.5, "n_m": [2, 4],
                                                                     "distribution": "uniform"}},
                           "grid": {"pruning.granularity": ["unstructured", "n:m"]}})
    assert [(c["pruning"]["granularity"], c["pruning"]["target_sparsity"], c["pruning"]["n_m"]) for c in nm] == [
        ("unstructured", 0.5, None), ("n:m", None, [2, 4])]
    models = _configs(client, {"name": "m", "base": {**BASE, "model": {"name": "mlp", "hidden": [64]}},
                               "grid": {"model.name": ["lenet300_100", "mlp"]}})
    assert [(c["model"]["name"], c["model"]["hidden"]) for c in models] == [("lenet300_100", None), ("mlp", [64])]
    optimizers = _configs(client, {"name": "o", "base": {**BASE, "training": {**BASE["training"], "nesterov": True}},
                                   "grid": {"training.optimizer": ["sgd", "adam"]}})
    assert [(c["training"]["optimizer"], c["training"]["nesterov"]) for c in optimizers] == [
        ("sgd", True), ("adam", False)]


def test_a_dependent_field_that_applies_to_no_combination_is_still_refused(client: TestClient) -> None:
    body = {"name": "x", "base": {**BASE, "model": {"name": "mlp", "hidden": [64]}},
            "grid": {"model.name": ["lenet300_100", "lenet5"]}}
    response = client.post("/api/sweeps", json=body)
    assert response.status_code == 422
    assert "model.hidden applies only to model.name 'mlp'" in response.text


def test_overlapping_grid_paths_are_refused(client: TestClient) -> None:
    # The later path silently won: two runs named lr=0.5 and lr=0.01 both trained at 0.2.
    response = client.post("/api/sweeps", json={"name": "ov", "base": BASE,
                                                "grid": {"training.lr": [0.5, 0.01], "training": [{"lr": 0.2}]}})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "grid", "training.lr"] and "overlap" in error["msg"]
    assert runs_total(client) == 0


def test_a_varied_block_keeps_every_field_it_sets_and_the_stored_grid_is_what_was_sent(client: TestClient) -> None:
    # A grid over the whole `pruning` block had target_sparsity silently dropped from its n:m value (and the stored
    # grid changed with it): what the user varies is never left out, so the combination is refused instead.
    grid = {"pruning": [{"granularity": "n:m", "n_m": [2, 4], "target_sparsity": 0.9}, {"target_sparsity": 0.5}]}
    response = client.post("/api/sweeps", json={"name": "blocks", "base": BASE, "grid": grid})
    assert response.status_code == 422 and "leave threshold and target_sparsity null" in response.text
    grid["pruning"][0].pop("target_sparsity")
    created = client.post("/api/sweeps", json={"name": "blocks", "base": BASE, "grid": grid})
    assert created.status_code == 201, created.text
    assert client.get(f"/api/sweeps/{created.json()['id']}").json()["grid"] == grid
