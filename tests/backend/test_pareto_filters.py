"""The Pareto document: groups by dataset and model, method labels, config summaries, the published overlay."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from backend.db import Database
from backend.results.published import published_results
from backend.results.service import config_summary
from backend.tables import Run
from tests.backend.conftest import digits_config


def completed(client: TestClient, *, sparsity: float, acc: float, **overrides: Any) -> int:
    """A submitted run, marked completed with its final figures straight in the database (the worker API's
    own tests cover how a worker gets it there)."""
    response = client.post("/api/runs", json=digits_config(**overrides))
    assert response.status_code == 201, response.text
    run_id: int = response.json()["id"]
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.writing() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.status, run.sparsity, run.test_acc = "completed", sparsity, acc
    return run_id


def test_groups_list_each_dataset_and_model_pair_most_common_first(client: TestClient) -> None:
    for i in range(2):
        completed(client, sparsity=0.5 + i / 10, acc=0.9, name=f"digits-{i}")
    completed(client, sparsity=0.9, acc=0.8, name="synthetic", dataset={"name": "synthetic"})
    groups = client.get("/api/pareto").json()["groups"]
    assert groups == [{"dataset": "digits", "model": "lenet300_100", "runs": 2},
                      {"dataset": "synthetic", "model": "lenet300_100", "runs": 1}]
    # The groups do not shrink with the filter: the chart still offers the other pairs.
    filtered = client.get("/api/pareto", params={"dataset": "synthetic", "model": "lenet300_100"}).json()
    assert [p["name"] for p in filtered["points"]] == ["synthetic"]
    assert filtered["groups"] == groups


def test_points_are_labelled_by_preset_else_strategy_and_carry_their_config(client: TestClient) -> None:
    gmp = completed(client, sparsity=0.9, acc=0.95, name="from-preset", preset="gmp",
                    training={"epochs": 3, "lr": 0.05, "batch_size": 64},
                    pruning={"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 2}})
    plain = completed(client, sparsity=0.5, acc=0.96, name="hand-made",
                      pruning={"target_sparsity": 0.5, "recovery": {"kind": "splice"}})
    points = {p["id"]: p for p in client.get("/api/pareto").json()["points"]}
    assert points[gmp]["method"] == "gmp" and points[gmp]["preset"] == "gmp"
    assert points[plain]["preset"] is None
    assert points[plain]["method"] == points[plain]["strategy"] != ""
    assert (points[gmp]["dataset"], points[gmp]["model"]) == ("digits", "lenet300_100")
    summary = points[gmp]["config_summary"]
    assert "0.05 lr" in summary and "64 batch" in summary and "target 0.9" in summary and "cubic 1–2" in summary
    assert "splice recovery" in points[plain]["config_summary"]


def test_published_results_come_only_for_one_model_and_dataset(client: TestClient) -> None:
    assert client.get("/api/pareto", params={"published": "true"}).json()["published"] == []
    assert client.get("/api/pareto", params={"model": "lenet300_100", "dataset": "mnist"}).json()["published"] == []
    body = client.get("/api/pareto", params={"model": "lenet300_100", "dataset": "mnist", "published": "true"}).json()
    dns = [p for p in body["published"] if p["method"] == "DNS"]
    assert len(dns) == 1
    assert dns[0]["sparsity"] == 0.982 and abs(dns[0]["accuracy"] - (1 - 0.0199)) < 1e-9
    assert "Guo" in dns[0]["source"]
    assert len([p for p in body["published"] if p["method"] == "Sparse momentum"]) == 3
    assert published_results(model="lenet5", dataset="digits") == []
    lenet5 = published_results(model="lenet5", dataset="mnist")
    assert {p["method"] for p in lenet5} == {"Han et al. 2015", "DNS", "Sparse VD", "Sparse momentum"}
    assert client.get("/api/pareto", params={"published": "maybe"}).status_code == 422


def test_config_summary_of_a_dense_run_and_of_nothing() -> None:
    assert config_summary(None) == ""
    dense = {"training": {"epochs": 5, "optimizer": "adam"}, "pruning": None}
    assert config_summary(dense) == "5 epochs · adam · dense"
    assert "threshold 1.7·std" in config_summary({"training": {}, "pruning": {"threshold": {"std_scale": 1.7}}})


def test_runs_naming_no_model_or_dataset_are_a_group_of_their_own(client: TestClient) -> None:
    # A tracked run's empty pair was offered as "on (1)", and choosing it (dataset= and model= empty) drew every
    # model's runs on one front.
    completed(client, sparsity=0.5, acc=0.9, name="managed")
    tracked = client.post("/api/tracked-runs", json={"name": "script", "lease": "x" * 43})
    assert tracked.status_code == 201, tracked.text
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.writing() as session:
        run = session.get(Run, tracked.json()["id"])
        assert run is not None
        run.status, run.sparsity, run.test_acc = "completed", 0.8, 0.85
    groups = client.get("/api/pareto").json()["groups"]
    assert {"dataset": "", "model": "", "runs": 1} in groups
    alone = client.get("/api/pareto", params={"dataset": "", "model": ""}).json()
    assert [p["name"] for p in alone["points"]] == ["script"]
    both = client.get("/api/pareto").json()
    assert sorted(p["name"] for p in both["points"]) == ["managed", "script"]
