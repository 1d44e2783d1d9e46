"""A run stored before a label rule existed still trains; its other fields are checked as ever."""

from __future__ import annotations

from typing import Any

from backend.db import Database
from backend.tables import Run
from prunescope.contract import WorkerOutcome
from tests.worker.conftest import Harness
from tests.worker.test_session import FakeTrainer, session


def store_config(harness: Harness, run_id: int, **fields: Any) -> None:
    """Write the stored config as an older API accepted it (names, tags: NUL was all it refused)."""
    db: Database = harness.client.app.state.db  # type: ignore[attr-defined]
    with db.writing() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.config = {**run.config, **fields}


def test_a_run_queued_with_a_tab_in_its_labels_before_they_had_to_be_one_line_trains(harness: Harness) -> None:
    # Its worker failed it: "the stored config is not valid: name: String should match pattern ...".
    run_id = harness.submit(epochs=2)
    store_config(harness, run_id, name="old\tname", tags=["a\nb"], preset="gmp\x07")
    assert session(harness, run_id, FakeTrainer()).run() == WorkerOutcome.COMPLETED
    assert harness.run(run_id)["status"] == "completed"


def test_a_stored_config_with_another_fault_still_fails_naming_it(harness: Harness) -> None:
    run_id = harness.submit(epochs=2)
    store_config(harness, run_id, name="old\tname", training={"epochs": 2, "batch_size": 0})
    assert session(harness, run_id, FakeTrainer()).run() == WorkerOutcome.FAILED
    run = harness.run(run_id)
    assert run["status"] == "failed" and "batch_size" in run["error"]
