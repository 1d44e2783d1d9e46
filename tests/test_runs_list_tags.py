"""The runs list at scale (issue 13): tags as rows of run_tags, runs best first off an index, migration 0008.

On SQLite and PostgreSQL: the tag filter is exact membership in a run's tags, whatever the tag holds, and
follows every change of the tags (submit, PATCH, tracked runs, delete); migration 0008 backfills run_tags
from the runs already stored; `-test_acc` lists NULLs last and reads its page off ix_runs_status_test_acc.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from backend import migrate
from backend.app import create_app
from backend.db import Database
from backend.tables import Run, RunTag
from prunescope.config import Settings
from prunescope.contract.tracking import TRACKING_PREFIX
from prunescope.contract.worker_api import LEASE_HEADER

WORKER = {"Authorization": "Bearer worker-secret"}
# Characters the old JSON-text match had to escape, LIKE wildcards, a JSON-looking tag, spaces and non-ASCII.
SPECIAL = ['a"b', "back\\slash", "100%", "under_score", '","', "[x]", "two words", "ünï", "日本", "a", "ab"]


@pytest.fixture
def client(settings: Settings, database_url: str) -> Iterator[TestClient]:
    settings = settings.model_copy(update={"database_url": database_url, "allowed_hosts": "localhost,testserver"})
    with TestClient(create_app(settings, start_dispatcher=False)) as test_client:
        yield test_client


def submit(client: TestClient, name: str, tags: list[str]) -> int:
    config = {"name": name, "tags": tags, "dataset": {"name": "digits"}, "training": {"epochs": 2}}
    response = client.post("/api/runs", json=config)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def tagged(client: TestClient, tag: str) -> list[int]:
    body = client.get("/api/runs", params={"tag": tag, "sort": "id", "limit": 500}).json()
    assert body["total"] == len(body["items"])
    return [run["id"] for run in body["items"]]


def expected(runs: dict[int, list[str]], tag: str) -> list[int]:
    return sorted(run_id for run_id, tags in runs.items() if tag in tags)


def test_tag_filter_is_exact_membership_for_any_characters(client: TestClient) -> None:
    runs: dict[int, list[str]] = {}
    for i in range(len(SPECIAL)):
        tags = [SPECIAL[i], SPECIAL[(i * 3 + 1) % len(SPECIAL)], "common"]
        runs[submit(client, f"r{i}", tags)] = tags
    runs[submit(client, "untagged", [])] = []
    runs[submit(client, "twice", ["dup", "dup"])] = ["dup", "dup"]
    for tag in [*SPECIAL, "common", "dup", "b", "%", "_", '"', "\\", "missing"]:
        assert tagged(client, tag) == expected(runs, tag), tag
    # Combined with other filters and sorts: the same runs, and the total agrees.
    body = client.get("/api/runs", params={"tag": "common", "q": "r1", "sort": "-created_at"}).json()
    assert sorted(r["id"] for r in body["items"]) == sorted(i for i, t in runs.items() if "common" in t
                                                           and client.get(f"/api/runs/{i}").json()["name"]
                                                           .startswith("r1"))
    assert body["total"] == len(body["items"])
    twice = next(i for i, t in runs.items() if t == ["dup", "dup"])
    assert client.get(f"/api/runs/{twice}").json()["tags"] == ["dup", "dup"]  # the run keeps its tags as given


def test_tag_pages_agree_with_the_general_query_in_every_order(client: TestClient) -> None:
    """A tag alone is answered from run_tags; with another filter, from runs: the same runs, pages and totals."""
    runs: dict[int, list[str]] = {}
    for i in range(12):
        tags = ["t"] if i % 3 else ["t", "other"]
        runs[submit(client, f"n{i}", tags)] = tags
    with client.app.state.db.writing() as session:  # type: ignore[attr-defined]
        for run in session.scalars(select(Run).where(Run.id.in_(list(runs)[:6]))):
            run.created_at = datetime(2026, 1, 1, tzinfo=UTC)  # equal creation times: ties go newest id first
    for sort in ("-created_at", "created_at", "-id", "name"):
        for offset in (0, 5):
            alone = client.get("/api/runs", params={"tag": "t", "sort": sort, "limit": 4, "offset": offset}).json()
            general = client.get("/api/runs", params={"tag": "t", "sort": sort, "limit": 4, "offset": offset,
                                                      "q": "n"}).json()
            assert [r["id"] for r in alone["items"]] == [r["id"] for r in general["items"]], (sort, offset)
            assert alone["total"] == general["total"] == 12
    newest = [r["id"] for r in client.get("/api/runs", params={"tag": "t", "limit": 50}).json()["items"]]
    old = list(runs)[:6]
    assert newest == [*sorted(set(runs) - set(old), reverse=True), *sorted(old, reverse=True)]


def test_tag_filter_follows_patch_and_delete(client: TestClient) -> None:
    first, second = submit(client, "one", ["old", "keep"]), submit(client, "two", ["old"])
    assert tagged(client, "old") == [first, second]
    assert client.patch(f"/api/runs/{first}", json={"tags": ["keep", "new", 'q"uote']}).status_code == 200
    assert tagged(client, "old") == [second]
    assert tagged(client, "new") == [first]
    assert tagged(client, "keep") == [first]
    assert tagged(client, 'q"uote') == [first]
    assert client.patch(f"/api/runs/{first}", json={"name": "renamed"}).status_code == 200  # tags left alone
    assert tagged(client, "keep") == [first]
    assert client.patch(f"/api/runs/{first}", json={"tags": []}).status_code == 200
    assert tagged(client, "keep") == [] and tagged(client, "new") == []
    assert client.post(f"/api/runs/{second}/cancel").status_code == 200
    assert client.delete(f"/api/runs/{second}").status_code == 204
    assert tagged(client, "old") == []


def test_tracked_runs_are_found_by_their_tags(client: TestClient) -> None:
    response = client.post(TRACKING_PREFIX, json={"name": "mine", "tags": ["tracked-tag"]})
    assert response.status_code == 201, response.text
    assert len(tagged(client, "tracked-tag")) == 1


def test_run_tags_rows_match_the_runs_tags_and_go_with_the_run(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.writing() as session:
            run = Run(name="x", config={}, tags=["a", "a", "b", 7, "x" * 65, ""])
            session.add(run)
        with db.writing() as session:
            stored = session.get(Run, run.id)
            assert stored is not None
            assert sorted(session.scalars(select(RunTag.tag).where(RunTag.run_id == run.id))) == ["a", "b"]
            stored.tags = ["b", "c"]
        with db.writing() as session:
            assert sorted(session.scalars(select(RunTag.tag))) == ["b", "c"]
            session.execute(text("DELETE FROM runs"))
        with db.session() as session:
            assert list(session.scalars(select(RunTag.tag))) == []
    finally:
        db.dispose()


def test_migration_0008_backfills_run_tags_from_stored_runs(database_url: str, tmp_path: Any) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db, "a7e1c0de0007")
        stored = {1: ["a", 'q"x', "a"], 2: [], 3: ["日本", "b"], 4: ["b", "y" * 65], 5: ["%_\\"]}
        with db.engine.begin() as conn:
            for run_id, tags in stored.items():
                conn.execute(text(
                    "INSERT INTO runs (id, name, tags, notes, status, config, strategy, device, model_name, "
                    "dataset_name, created_at, epochs_total, epochs_done, dispatched, attempts, handbacks, "
                    "cancel_requested, kind) VALUES (:id, :name, :tags, '', 'completed', '{}', 'dense', 'cpu', "
                    "'m', 'd', :now, 1, 1, true, 1, 0, false, 'managed')"),
                    {"id": run_id, "name": f"r{run_id}", "tags": json.dumps(tags),
                     "now": "2026-11-28 12:00:00"})
        migrate.upgrade(db)
        with db.session() as session:
            rows = sorted((r.run_id, r.tag) for r in session.scalars(select(RunTag)))
        assert rows == [(1, "a"), (1, 'q"x'), (3, "b"), (3, "日本"), (4, "b"), (5, "%_\\")]
        with db.session() as session:
            stamps = {r.created_at for r in session.scalars(select(RunTag))}
        assert [stamp.isoformat() for stamp in stamps] == ["2026-11-28T12:00:00+00:00"]
        migrate.downgrade(db, "a7e1c0de0007")  # and back: the table and the index go
        migrate.upgrade(db)
        with db.session() as session:
            assert session.scalar(text("SELECT COUNT(*) FROM run_tags")) == 6
    finally:
        db.dispose()


def test_best_first_lists_nulls_last_with_ties_by_newest_on_both_databases(client: TestClient) -> None:
    ids = [submit(client, f"r{i}", []) for i in range(5)]
    accs: list[float | None] = [0.5, None, 0.9, 0.5, None]
    for run_id, acc in zip(ids, accs, strict=True):
        finish(client, run_id, acc)
    order = [r["id"] for r in client.get("/api/runs", params={"status": "completed", "sort": "-test_acc"})
             .json()["items"]]
    assert order == [ids[2], ids[3], ids[0], ids[4], ids[1]]


def finish(client: TestClient, run_id: int, acc: float | None) -> None:
    answer = client.post(f"/api/worker/runs/{run_id}/start", json={"worker": "w"}, headers=WORKER).json()
    leased = {**WORKER, LEASE_HEADER: answer["lease"]}
    for epoch in (1, 2):  # completed needs every epoch recorded
        report = {"worker": "w", "epoch": epoch}
        assert client.post(f"/api/worker/runs/{run_id}/epochs", json=report, headers=leased).status_code == 200
    summary: dict[str, Any] = {} if acc is None else {"final_test_acc": acc}
    body = {"worker": "w", "status": "completed", "summary": summary}
    assert client.post(f"/api/worker/runs/{run_id}/finish", json=body, headers=leased).status_code == 204


def test_best_first_reads_its_page_off_the_index(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        query = ("SELECT id FROM runs WHERE status = 'completed' "
                 "ORDER BY test_acc DESC NULLS LAST, id DESC LIMIT 20")
        with db.session() as session:
            if db.is_sqlite:
                plan = " ".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + query)))
                assert "ix_runs_status_test_acc" in plan and "TEMP B-TREE" not in plan, plan
            else:
                session.execute(text("SET LOCAL enable_seqscan = off"))
                session.execute(text("SET LOCAL enable_sort = off"))
                plan = " ".join(str(row[0]) for row in session.execute(text("EXPLAIN " + query)))
                assert "ix_runs_status_test_acc" in plan and "Sort" not in plan, plan
    finally:
        db.dispose()
