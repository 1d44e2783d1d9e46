"""Chart series, comparison, the Pareto front, list filters, editing and deleting runs, model download."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.artifacts import artifact_path
from backend.db import Database
from backend.tables import Epoch, MaskSnapshot, Run, RunEvent
from prunescope import maskcodec
from tests.backend.conftest import claim, digits_config

PRUNED = {"pruning": {"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 2}}}


def submit(client: TestClient, **overrides: Any) -> int:
    response = client.post("/api/runs", json=digits_config(**overrides))
    assert response.status_code == 201, response.text
    run_id: int = response.json()["id"]
    return run_id


def db_of(client: TestClient) -> Database:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    return db


def add_epochs(client: TestClient, run_id: int, rows: list[dict[str, Any]]) -> None:
    """Store epochs straight through the ORM: hundreds of HTTP reports would only slow the tests down."""
    with db_of(client).writing() as session:
        session.add_all(Epoch(run_id=run_id, layers=row.pop("layers", []), **row) for row in rows)


def finish(client: TestClient, run_id: int, *, sparsity: float, acc: float, status: str = "completed") -> None:
    """Drive a run through the worker endpoints to a finished state with a final sparsity and accuracy."""
    leased = claim(client, run_id, "w1")
    if status == "completed":  # completed needs every epoch recorded
        for epoch in range(1, client.get(f"/api/runs/{run_id}").json()["epochs_total"] + 1):
            client.post(f"/api/worker/runs/{run_id}/epochs", json={"worker": "w1", "epoch": epoch}, headers=leased)
    body = {"worker": "w1", "status": status, "summary": {"final_sparsity": sparsity, "final_test_acc": acc}}
    assert client.post(f"/api/worker/runs/{run_id}/finish", json=body, headers=leased).status_code == 204


def test_metrics_returns_the_requested_series_per_epoch(client: TestClient) -> None:
    run_id = submit(client)
    add_epochs(client, run_id, [{"epoch": e, "train_loss": 1.0 / e, "test_acc": 0.5 + 0.1 * e, "nonzero": 100 - e,
                                 "sparsity": None if e == 2 else 0.1 * e} for e in (1, 2, 3)])
    body = client.get(f"/api/runs/{run_id}/metrics", params={"names": "test_acc, sparsity,nonzero"}).json()
    assert body["run_id"] == run_id
    assert body["epochs_total"] == 3
    assert body["epochs_recorded"] == 3
    assert set(body["series"]) == {"test_acc", "sparsity", "nonzero"}
    assert body["series"]["test_acc"] == {"x": [1, 2, 3], "y": pytest.approx([0.6, 0.7, 0.8])}
    assert body["series"]["sparsity"]["x"] == [1, 3]  # a missing value is left out, not sent as 0
    assert body["series"]["nonzero"]["y"] == [99, 98, 97]
    everything = client.get(f"/api/runs/{run_id}/metrics").json()["series"]
    assert set(everything) == {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "sparsity",
                               "target_sparsity", "nonzero", "total", "epoch_seconds", "samples_per_s"}
    assert everything["lr"] == {"x": [], "y": []}


def test_metrics_downsamples_long_runs_and_keeps_the_spike(client: TestClient) -> None:
    run_id = submit(client, training={"epochs": 1000})
    rows = [{"epoch": e, "train_loss": 1.0 + 0.001 * (e % 7)} for e in range(1, 1001)]
    rows[636]["train_loss"] = 99.0
    add_epochs(client, run_id, rows)
    series = client.get(f"/api/runs/{run_id}/metrics", params={"names": "train_loss", "max_points": 50}).json()
    loss = series["series"]["train_loss"]
    assert len(loss["x"]) <= 50
    assert 99.0 in loss["y"] and 637 in loss["x"]
    assert series["epochs_recorded"] == 1000
    full = client.get(f"/api/runs/{run_id}/metrics", headers={"Accept-Encoding": "gzip"})
    assert full.headers["content-encoding"] == "gzip"  # compressed once, by the endpoint
    assert len(full.json()["series"]["train_loss"]["x"]) == 1000
    plain = client.get(f"/api/runs/{run_id}/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json() == full.json()


def test_metrics_rejects_unknown_series_and_bad_bounds(client: TestClient) -> None:
    run_id = submit(client)
    for params in ({"names": "test_acc,bogus"}, {"max_points": 1}, {"max_points": "many"}, {"max_points": 10**6}):
        response = client.get(f"/api/runs/{run_id}/metrics", params=params)
        assert response.status_code == 422, params
    assert "bogus" in client.get(f"/api/runs/{run_id}/metrics?names=bogus").json()["detail"][0]["msg"]
    assert client.get("/api/runs/999/metrics").status_code == 404
    assert client.get(f"/api/runs/{2**31}/metrics").status_code == 422  # past a 32-bit id: refused, not a 500


def test_compare_returns_runs_in_the_order_asked(client: TestClient) -> None:
    first, second = submit(client, name="a"), submit(client, name="b", **PRUNED)
    add_epochs(client, first, [{"epoch": 1, "test_acc": 0.9, "sparsity": 0.0}])
    add_epochs(client, second, [{"epoch": 1, "test_acc": 0.8, "sparsity": 0.5}])
    body = client.get("/api/compare", params={"ids": f"{second},{first}", "names": "test_acc,sparsity"}).json()
    assert [r["id"] for r in body["runs"]] == [second, first]
    assert body["runs"][0]["name"] == "b"
    assert body["runs"][0]["strategy"] == "magnitude/unstructured"
    assert body["runs"][0]["status"] == "queued"
    assert body["runs"][0]["series"]["sparsity"] == {"x": [1], "y": [0.5]}
    assert set(body["runs"][1]["series"]) == {"test_acc", "sparsity"}
    missing = client.get("/api/compare", params={"ids": f"{first},424242"})
    assert missing.status_code == 404 and "424242" in missing.json()["detail"]
    for bad in ("", "1;2", "a,b", ",".join(["1"] * 51)):
        assert client.get("/api/compare", params={"ids": bad}).status_code == 422, bad
    assert client.get("/api/compare", params={"ids": str(first), "names": "nope"}).status_code == 422


def test_pareto_front_keeps_the_runs_no_other_beats_on_both(client: TestClient) -> None:
    points = {"dense": (0.0, 0.98), "gmp90": (0.9, 0.97), "worse": (0.8, 0.90), "dns98": (0.98, 0.95),
              "twin": (0.98, 0.95), "sparse_bad": (0.99, 0.50)}
    ids = {}
    for name, (sparsity, acc) in points.items():
        ids[name] = submit(client, name=name)
        finish(client, ids[name], sparsity=sparsity, acc=acc)
    running = submit(client, name="running")
    claim(client, running, "w2")
    other_dataset = submit(client, name="synthetic", dataset={"name": "synthetic"})
    finish(client, other_dataset, sparsity=0.999, acc=0.999)

    body = client.get("/api/pareto", params={"dataset": "digits", "model": "lenet300_100"}).json()
    on_front = {p["name"] for p in body["points"] if p["on_front"]}
    assert on_front == {"dense", "gmp90", "dns98", "twin", "sparse_bad"}
    assert {p["name"] for p in body["points"]} == set(points)  # only completed runs of that dataset
    assert body["front"] == [ids["dense"], ids["gmp90"], ids["dns98"], ids["twin"], ids["sparse_bad"]]
    everything = client.get("/api/pareto").json()
    assert everything["front"] == [other_dataset]  # sparser and more accurate than every digits run
    assert client.get("/api/pareto", params={"model": "x" * 100}).status_code == 422


def test_list_filters_by_strategy_device_model_dataset_and_result_ranges(client: TestClient) -> None:
    dense = submit(client, name="dense", device="cpu")
    pruned = submit(client, name="pruned", preset="gmp", **PRUNED)
    synthetic = submit(client, name="synthetic", dataset={"name": "synthetic"}, model={"name": "mlp", "hidden": [8]})
    finish(client, dense, sparsity=0.0, acc=0.97)
    finish(client, pruned, sparsity=0.9, acc=0.95)

    def names(**params: Any) -> list[str]:
        page = client.get("/api/runs", params={"sort": "id", **params})
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == len(body["items"])
        return [r["name"] for r in body["items"]]

    assert names(strategy="magnitude/unstructured") == ["pruned"]
    assert names(preset="gmp") == ["pruned"]
    assert names(device="cpu") == ["dense"]
    assert names(model="mlp") == ["synthetic"]
    assert names(dataset="digits") == ["dense", "pruned"]
    assert names(min_sparsity=0.5) == ["pruned"]
    assert names(max_sparsity=0.5) == ["dense"]
    assert names(min_acc=0.96) == ["dense"]
    assert names(min_acc=0.9, max_acc=0.96) == ["pruned"]
    assert names(dataset="digits", status="completed", min_sparsity=0.0) == ["dense", "pruned"]
    assert [r["id"] for r in client.get("/api/runs", params={"sort": "-test_acc"}).json()["items"]][:2] == [dense,
                                                                                                             pruned]
    assert synthetic
    for bad in ({"min_sparsity": 2}, {"max_acc": -1}, {"device": "tpu"}, {"min_acc": "high"}):
        assert client.get("/api/runs", params=bad).status_code == 422, bad


def test_patch_changes_name_tags_and_notes_only(client: TestClient) -> None:
    run_id = submit(client, name="before", tags=["a"])
    response = client.patch(f"/api/runs/{run_id}", json={"name": "after", "notes": "looks good"})
    assert response.status_code == 200
    run = response.json()
    assert (run["name"], run["tags"], run["notes"]) == ("after", ["a"], "looks good")
    assert client.patch(f"/api/runs/{run_id}", json={"tags": ["x", "y"]}).json()["tags"] == ["x", "y"]
    stored = client.get(f"/api/runs/{run_id}").json()
    assert (stored["name"], stored["tags"], stored["notes"]) == ("after", ["x", "y"], "looks good")
    assert client.get("/api/runs", params={"tag": "y"}).json()["total"] == 1


BAD_PATCHES = [
    ({"name": "x" * 201}, "name"), ({"name": ""}, "name"), ({"name": None}, "name"), ({"tags": ["t" * 65]}, "tags"),
    ({"tags": "solo"}, "tags"), ({"tags": [""]}, "tags"), ({"status": "completed"}, "status"),
    ({"config": {}}, "config"), ({"notes": None}, "notes"),
]


def test_patch_rejects_bad_fields_naming_them(client: TestClient) -> None:
    run_id = submit(client, name="keep")
    for body, field in BAD_PATCHES:
        response = client.patch(f"/api/runs/{run_id}", json=body)
        assert response.status_code == 422, body
        assert any(field in [str(p) for p in d["loc"]] for d in response.json()["detail"]), body
    assert client.get(f"/api/runs/{run_id}").json()["name"] == "keep"


def test_patch_unknown_run_is_404(client: TestClient) -> None:
    assert client.patch("/api/runs/999", json={"name": "x"}).status_code == 404


def _count(db: Database, model: Any, run_id: int) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(model.run_id == run_id)) or 0


def test_delete_removes_a_finished_runs_epochs_masks_events_and_files(client: TestClient) -> None:
    run_id, other = submit(client), submit(client)
    leased = claim(client, run_id, "w1")
    mask = maskcodec.encode(np.ones((4, 4), dtype=bool)).to_json()
    epoch = {"worker": "w1", "epoch": 1, "test_acc": 0.5, "masks": {"fc1.weight": mask}}
    assert client.post(f"/api/worker/runs/{run_id}/epochs", json=epoch, headers=leased).status_code == 200
    client.post(f"/api/worker/runs/{run_id}/finish", json={"worker": "w1", "status": "failed"}, headers=leased)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    model = artifact_path(settings.resolved_artifact_dir, run_id, "model.pt")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    db = db_of(client)
    assert all(_count(db, table, run_id) > 0 for table in (Epoch, MaskSnapshot, RunEvent))

    assert client.delete(f"/api/runs/{run_id}").status_code == 204
    assert client.get(f"/api/runs/{run_id}").status_code == 404
    # The rows go by ON DELETE CASCADE: on SQLite only because backend/db.py turns foreign keys on.
    assert [_count(db, table, run_id) for table in (Epoch, MaskSnapshot, RunEvent)] == [0, 0, 0]
    assert not model.parent.exists()
    assert client.get(f"/api/runs/{other}").status_code == 200
    assert _count(db, RunEvent, other) > 0
    assert client.delete(f"/api/runs/{run_id}").status_code == 404


def test_delete_refuses_queued_and_running_runs(client: TestClient) -> None:
    queued, running = submit(client), submit(client)
    claim(client, running, "w1")
    for run_id in (queued, running):
        response = client.delete(f"/api/runs/{run_id}")
        assert response.status_code == 409
        assert "cancel it first" in response.json()["detail"]
    with db_of(client).session() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 2
    client.post(f"/api/runs/{queued}/cancel")
    assert client.delete(f"/api/runs/{queued}").status_code == 204


def test_model_download_serves_the_pruned_model_or_says_why_not(client: TestClient) -> None:
    run_id = submit(client)
    missing = client.get(f"/api/runs/{run_id}/model")
    assert missing.status_code == 404
    assert "no pruned model" in missing.json()["detail"]
    settings = client.app.state.settings  # type: ignore[attr-defined]
    path = artifact_path(settings.resolved_artifact_dir, run_id, "model.pt")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00model bytes")
    response = client.get(f"/api/runs/{run_id}/model")
    assert response.status_code == 200
    assert response.content == b"\x00model bytes"
    assert "attachment" in response.headers["content-disposition"]
    assert client.get("/api/runs/999/model").status_code == 404


def test_new_write_endpoints_need_the_api_token_when_one_is_set(api_settings: Any) -> None:
    from backend.app import create_app

    with TestClient(create_app(api_settings.model_copy(update={"api_token": "s3cret"}),
                               start_dispatcher=False)) as client:
        auth = {"Authorization": "Bearer s3cret"}
        run_id = client.post("/api/runs", json=digits_config(), headers=auth).json()["id"]
        client.post(f"/api/runs/{run_id}/cancel", headers=auth)
        assert client.patch(f"/api/runs/{run_id}", json={"name": "x"}).status_code == 401
        assert client.delete(f"/api/runs/{run_id}").status_code == 401
        sweep = {"name": "s", "base": digits_config(), "grid": {"training.seed": [0, 1]}}
        assert client.post("/api/sweeps", json=sweep).status_code == 401
        assert client.get("/api/runs").json()["total"] == 1
        assert client.patch(f"/api/runs/{run_id}", json={"name": "x"}, headers=auth).status_code == 200
        assert client.post("/api/sweeps", json=sweep, headers=auth).status_code == 201
        assert client.delete(f"/api/runs/{run_id}", headers=auth).status_code == 204
        for read in (f"/api/runs/{run_id + 1}/metrics", "/api/pareto", "/api/sweeps", "/api/sweeps/1"):
            assert client.get(read).status_code == 200, read


def test_epochs_list_keeps_the_documented_shape_at_full_fidelity(client: TestClient) -> None:
    from backend.runs.schemas import EpochList

    run_id = submit(client, training={"epochs": 3})
    add_epochs(client, run_id, [{"epoch": e, "test_acc": 0.9, "nonzero": 7,
                                 "layers": [{"name": "fc1.weight", "shape": [2, 3], "sparsity": 0.5}]}
                                for e in (1, 2)])
    body = client.get(f"/api/runs/{run_id}/epochs").json()
    assert EpochList.model_validate(body).model_dump(mode="json") == body  # nothing missing, nothing extra
    assert body["items"][1]["layers"][0] == {"name": "fc1.weight", "shape": [2, 3], "sparsity": 0.5, "pruned": 0,
                                             "regrown": 0, "threshold": None, "histogram": None}


def test_list_sorts_on_every_summary_column(client: TestClient) -> None:
    first, second = submit(client, name="b", preset="set"), submit(client, name="a", preset="dns")
    for column in ("preset", "epochs_total", "queue", "worker", "attempts", "sweep_id", "name", "strategy"):
        assert client.get("/api/runs", params={"sort": column}).status_code == 200, column
    assert [r["id"] for r in client.get("/api/runs", params={"sort": "preset"}).json()["items"]] == [second, first]


def test_nul_bytes_are_refused_before_they_reach_the_database(client: TestClient) -> None:
    # PostgreSQL cannot store or compare text with NUL bytes; they must be a 422, never a 500.
    run_id = submit(client)
    for params in ({"q": "a\x00b"}, {"tag": "a\x00"}, {"strategy": "\x00"}, {"model": "\x00"}, {"preset": "\x00"},
                   {"dataset": "x\x00"}):
        assert client.get("/api/runs", params=params).status_code == 422, params
    assert client.get("/api/pareto", params={"dataset": "\x00"}).status_code == 422
    for body in ({"name": "a\x00b"}, {"notes": "\x00"}, {"tags": ["\x00"]}):
        assert client.patch(f"/api/runs/{run_id}", json=body).status_code == 422, body
    sweep = {"name": "a\x00", "base": digits_config(), "grid": {"training.seed": [0]}}
    assert client.post("/api/sweeps", json=sweep).status_code == 422
