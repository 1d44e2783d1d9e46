"""The history endpoint's fast path (stored JSON spliced, not decoded) answers what the record-by-record path does."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from backend.db import Database
from backend.runs import repository, service
from backend.tables import Epoch
from prunescope.contract.records import LayerStats
from tests.backend.conftest import claim, digits_config

HISTOGRAM = {"edges": [0.001, 0.01, 0.1], "counts": [3, 4], "kept": [1, 4]}


def layer(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "shape": [6, 16], "sparsity": 0.25, "pruned": 3, "regrown": 2, "threshold": 0.0125,
            **fields}


def old_document(db: Database, run_id: int) -> dict[str, Any]:
    """What the endpoint answered before: every row through the ORM and `epoch_document`."""
    with db.session() as session:
        items = [service.epoch_document(row) for row in repository.list_epochs(session, run_id)]
    return {"run_id": run_id, "items": items}


def history(client: TestClient, run_id: int, **headers: str) -> Any:
    response = client.get(f"/api/runs/{run_id}/epochs", headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_history_of_a_worker_run_matches_the_record_by_record_document(client: TestClient) -> None:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    run_id = client.post("/api/runs", json=digits_config(tags=[], training={"epochs": 4})).json()["id"]
    headers = claim(client, run_id)
    names = ['fc1.weight', 'odd "name": with \\ quotes', 'histogram":x']  # key-like text inside names
    sent = ["fc1.weight", "fc2.weight", "fc3.weight"]  # the API refuses such names now; stored before, they stay
    for epoch in (1, 2, 3):
        body = {"worker": "w", "epoch": epoch, "train_loss": 1 / 3 * epoch, "test_acc": 0.1 * epoch, "lr": None,
                "sparsity": 0.5, "nonzero": 10, "total": 20,
                "layers": [layer(sent[0], histogram=HISTOGRAM), layer(sent[1]), layer(sent[2], threshold=None)]}
        assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=headers).status_code == 200
    # An epoch written before the stats had every field (pruned, regrown, threshold, histogram): filled in.
    with db.writing() as session:
        for row in session.scalars(select(Epoch).where(Epoch.run_id == run_id)):
            row.layers = [{**stats, "name": names[sent.index(stats["name"])]} for stats in row.layers]
        session.flush()
        session.execute(update(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == 2)
                        .values(layers=[{"name": "fc1.weight", "shape": [6, 16], "sparsity": 0.5}]))
    answer = history(client, run_id).json()
    assert answer == orjson.loads(orjson.dumps(old_document(db, run_id)))
    assert [item["epoch"] for item in answer["items"]] == [1, 2, 3]
    assert answer["items"][1]["layers"] == [{"name": "fc1.weight", "shape": [6, 16], "sparsity": 0.5, "pruned": 0,
                                             "regrown": 0, "threshold": None, "histogram": None}]
    assert answer["items"][0]["layers"][0]["histogram"] == HISTOGRAM
    assert answer["items"][0]["layers"][1]["name"] == names[1]
    assert answer["items"][0]["extra"] is None and answer["items"][0]["attempt"] == 1


def test_history_of_a_tracked_run_keeps_its_extra_scalars(client: TestClient) -> None:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    created = client.post("/api/tracked-runs", json={"name": "own-loop", "config": {"epochs": 3}}).json()
    epochs = [{"epoch": 1, "train_loss": 0.5, "extra": {"grad_norm": 2.5, "diverged": None}},
              {"epoch": 2, "test_acc": 0.75, "layers": [layer("fc1.weight", histogram=HISTOGRAM)]},
              {"epoch": 3, "extra": {}}]
    batch = client.post(f"/api/tracked-runs/{created['id']}/batch", json={"epochs": epochs},
                        headers={"X-Prunescope-Lease": created["lease"]})
    assert batch.status_code == 200, batch.text
    answer = history(client, created["id"]).json()
    assert answer == orjson.loads(orjson.dumps(old_document(db, created["id"])))
    assert [item["extra"] for item in answer["items"]] == [{"grad_norm": 2.5, "diverged": None}, None, None]
    assert answer["items"][1]["layers"][0]["histogram"] == HISTOGRAM


def test_history_is_gzipped_only_for_clients_that_accept_it(client: TestClient) -> None:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    run_id = client.post("/api/runs", json=digits_config(tags=[], training={"epochs": 30})).json()["id"]
    headers = claim(client, run_id)
    for epoch in range(1, 31):
        body = {"worker": "w", "epoch": epoch, "layers": [layer(f"layer{k}.weight") for k in range(5)]}
        assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=headers).status_code == 200
    expected = orjson.loads(orjson.dumps(old_document(db, run_id)))
    raw = client.get(f"/api/runs/{run_id}/epochs", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip" and raw.json() == expected  # the client decompresses
    plain = client.get(f"/api/runs/{run_id}/epochs", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and orjson.loads(plain.content) == expected
    assert len(gzip.compress(plain.content)) < len(plain.content)


def test_history_of_an_unknown_run_is_a_404_and_of_an_empty_one_has_no_items(client: TestClient) -> None:
    missing = client.get("/api/runs/999/epochs")
    assert missing.status_code == 404 and missing.json() == {"detail": "run 999 not found"}
    assert client.get("/api/runs/0/epochs").status_code == 422
    run_id = client.post("/api/runs", json=digits_config(tags=[])).json()["id"]
    assert history(client, run_id).json() == {"run_id": run_id, "items": []}


@pytest.mark.parametrize("text", ["[]", '[{"name":"a","shape":[1],"sparsity":0.5}]'])
def test_incomplete_or_empty_stored_layers_are_decoded_and_filled_in(text: str) -> None:
    layers = orjson.loads(service.epochs_json(1, [(1, *[None] * 12, text, None)]))["items"][0]["layers"]
    assert all(len(stats) == len(LayerStats.model_fields) for stats in layers)


def test_every_optional_layer_field_has_a_default_for_old_rows() -> None:
    optional = {name for name, field in LayerStats.model_fields.items() if not field.is_required()}
    assert optional == set(service.LAYER_DEFAULTS)
    assert service.NEWEST_LAYER_KEY == '"histogram":'


def test_a_cached_history_is_served_until_the_runs_epochs_change(client: TestClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.HistoryCache, "MIN_BYTES", 0)
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    run_id = client.post("/api/runs", json=digits_config(tags=[], training={"epochs": 3})).json()["id"]
    headers = claim(client, run_id)

    def report(epoch: int, loss: float) -> None:
        body = {"worker": "w", "epoch": epoch, "train_loss": loss, "layers": [layer("fc1.weight")]}
        assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=headers).status_code == 200

    def losses(encoding: str) -> list[float]:
        return [item["train_loss"] for item in history(client, run_id, **{"Accept-Encoding": encoding}).json()["items"]]

    report(1, 0.5)
    report(2, 0.25)
    assert losses("identity") == losses("identity") == losses("gzip") == [0.5, 0.25]
    assert {(db.url, run_id, False, "records"), (db.url, run_id, True, "records")} <= set(service.HISTORIES.entries)
    report(2, 0.125)  # a replayed epoch replaces the stored one
    assert losses("identity") == losses("gzip") == [0.5, 0.125]
    report(3, 0.0625)
    assert losses("gzip") == [0.5, 0.125, 0.0625]
    assert history(client, run_id).json() == orjson.loads(orjson.dumps(old_document(db, run_id)))


def test_the_history_cache_keeps_the_newest_entries_and_checks_fingerprints() -> None:
    cache = service.HistoryCache(size=2)
    body = (b"x" * cache.MIN_BYTES, {"Vary": "Accept-Encoding"})
    cache.put(("a", 1, False), (1,), body)
    cache.put(("a", 2, False), (1,), body)
    assert cache.get(("a", 1, False), (1,)) == body  # 1 is now the newest
    assert cache.get(("a", 1, False), (2,)) is None and cache.get(("a", 1, True), (1,)) is None
    assert cache.get(("b", 1, False), (1,)) is None  # another database's run 1
    cache.put(("a", 3, False), (1,), body)
    assert cache.get(("a", 2, False), (1,)) is None and cache.get(("a", 1, False), (1,)) == body
    cache.put(("a", 4, False), (1,), (b"small", {}))
    assert cache.get(("a", 4, False), (1,)) is None


def transposed(records: dict[str, Any]) -> dict[str, Any]:
    """`?layout=columns` as it must be: the records document, one array per series, null where an epoch lacks it."""
    items = records["items"]
    columns = {name: [item[name] for item in items] for name in service.EPOCH_SCALARS}
    names = list(dict.fromkeys(layer["name"] for item in items for layer in item["layers"]))
    layers = {}
    for name in names:
        per_epoch = [next((x for x in item["layers"] if x["name"] == name), None) for item in items]
        last = [x for x in per_epoch if x is not None][-1]
        layers[name] = {"shape": last["shape"], **{field: [None if x is None else x[field] for x in per_epoch]
                                                   for field in ("sparsity", "pruned", "regrown", "threshold",
                                                                 "histogram")}}
    extra_names = list(dict.fromkeys(key for item in items for key in (item["extra"] or {})))
    extra = {key: [(item["extra"] or {}).get(key) for item in items] for key in extra_names}
    return {"run_id": records["run_id"], "columns": columns, "layers": layers, "extra": extra}


def test_the_columns_layout_holds_every_value_of_the_records_layout(client: TestClient) -> None:
    from backend.runs.schemas import EpochColumns

    created = client.post("/api/tracked-runs", json={"name": "cols", "config": {"epochs": 4}}).json()
    epochs = [{"epoch": 1, "train_loss": 0.5, "extra": {"grad_norm": 2.5},
               "layers": [layer("a.weight", histogram=HISTOGRAM), layer("b.weight", shape=[3, 4])]},
              {"epoch": 2, "test_acc": 0.75, "layers": [layer("b.weight", shape=[3, 2], threshold=None)]},
              {"epoch": 3, "extra": {"late": 1.0, "grad_norm": None},
               "layers": [layer("c.weight"), layer("a.weight", sparsity=0.5)]},
              {"epoch": 4, "extra": {}}]
    batch = client.post(f"/api/tracked-runs/{created['id']}/batch", json={"epochs": epochs},
                        headers={"X-Prunescope-Lease": created["lease"]})
    assert batch.status_code == 200, batch.text
    records = history(client, created["id"]).json()
    response = client.get(f"/api/runs/{created['id']}/epochs", params={"layout": "columns"})
    assert response.status_code == 200, response.text
    columns = response.json()
    assert columns == transposed(records)
    assert EpochColumns.model_validate(columns).model_dump(mode="json") == columns
    assert columns["layers"]["a.weight"]["sparsity"] == [0.25, None, 0.5, None]
    assert columns["layers"]["b.weight"]["shape"] == [3, 2]  # as last reported
    assert columns["layers"]["c.weight"]["pruned"] == [None, None, 3, None]
    assert columns["extra"] == {"grad_norm": [2.5, None, None, None], "late": [None, None, 1.0, None]}
    assert list(columns["layers"]) == ["a.weight", "b.weight", "c.weight"]  # first-reported order
    # Both layouts are cached side by side, gzipped or not: asking for one never serves the other.
    again = client.get(f"/api/runs/{created['id']}/epochs", params={"layout": "columns"},
                       headers={"Accept-Encoding": "gzip"})
    assert again.json() == columns
    assert history(client, created["id"]).json() == records
    assert client.get(f"/api/runs/{created['id']}/epochs", params={"layout": "rows"}).status_code == 422
    assert client.get("/api/runs/999999/epochs", params={"layout": "columns"}).status_code == 404


def test_the_columns_layout_of_a_run_without_epochs_is_empty(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=digits_config(tags=[])).json()["id"]
    answer = client.get(f"/api/runs/{run_id}/epochs", params={"layout": "columns"}).json()
    assert answer == {"run_id": run_id, "columns": {name: [] for name in service.EPOCH_SCALARS}, "layers": {},
                      "extra": {}}
