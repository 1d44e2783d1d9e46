"""The tracking SDK against a live API: tracked runs, watched pruners, points, cancel, failures, leases, batches."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import torch
from pydantic import ValidationError
from torch import nn

import prunescope
from backend.db import Database
from backend.maskviews.service import mask_at
from prunescope.contract.worker_api import LEASE_HEADER
from tests.sdk.conftest import TOKEN, LiveApi


def wait_for(condition: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def tiny_training(epochs: int = 3, steps: int = 4) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = prunescope.Pruner(model, optimizer, {"target_sparsity": 0.8, "schedule": {
        "kind": "linear", "start_epoch": 1, "end_epoch": epochs, "every_steps": 2}},
        epochs=epochs, steps_per_epoch=steps)
    return model, optimizer, pruner


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 4) -> float:
    loss = torch.tensor(0.0)
    for _ in range(steps):
        x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()  # the attached pruner keeps the masks; no other call
    return loss.item()


def test_tracked_run_keeps_record_columns_and_other_scalars_and_lists_as_tracked(api: LiveApi, tmp_path: Path) -> None:
    with prunescope.init(name="own-loop", config={"arch": "resnet20", "lr": 0.1, "nested": {"depth": [1, 2]}},
                         tags=["sdk"], api=api.url, token=TOKEN, dir=tmp_path) as run:
        assert run.id is not None
        for epoch in (1, 2, 3):
            run.log(epoch=epoch, train_loss=1.0 / epoch, test_acc=0.5 + epoch / 10, grad_norm=np.float32(2.5),
                    diverged=float("nan"))
    with api.http() as http:
        detail = http.get(f"/api/runs/{run.id}").json()
        epochs = http.get(f"/api/runs/{run.id}/epochs").json()["items"]
        listed = http.get("/api/runs", params={"q": "own-loop"}).json()["items"]
    assert detail["kind"] == "tracked" and detail["status"] == "completed"
    assert detail["config"] == {"arch": "resnet20", "lr": 0.1, "nested": {"depth": [1, 2]}}
    assert detail["model"] == "resnet20" and detail["epochs_done"] == 3 and detail["test_acc"] == pytest.approx(0.8)
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert [e["attempt"] for e in epochs] == [1, 1, 1]  # SPEC: every epoch record names its attempt (was null)
    assert detail["summary"] == {"final_test_acc": pytest.approx(0.8), "best_test_acc": pytest.approx(0.8),
                                 "epochs_done": 3}  # none sent: the records' (was null)
    assert epochs[1]["train_loss"] == pytest.approx(0.5)
    assert epochs[1]["extra"] == {"grad_norm": 2.5, "diverged": None}
    assert [r["kind"] for r in listed] == ["tracked"]
    assert list(tmp_path.iterdir()) == []  # online: nothing was spooled


def test_watched_pruner_records_layer_stats_and_bit_exact_masks(api: LiveApi, tmp_path: Path) -> None:
    model, optimizer, pruner = tiny_training()
    run = prunescope.init(name="watched", api=api.url, token=TOKEN, dir=tmp_path)
    run.watch(pruner)
    expected: list[dict[str, np.ndarray]] = []
    for epoch in (1, 2, 3):
        train_epoch(model, optimizer)
        expected.append({name: mask.numpy().copy() for name, mask in pruner.masks().items()})
        run.log(epoch=epoch, train_loss=0.1)
    run.finish()
    with api.http() as http:
        detail = http.get(f"/api/runs/{run.id}").json()
        epochs = http.get(f"/api/runs/{run.id}/epochs").json()["items"]
    assert detail["strategy"] == "magnitude/unstructured"
    assert detail["config"]["pruning"]["target_sparsity"] == 0.8
    assert [layer["name"] for layer in epochs[0]["layers"]] == ["0.weight", "2.weight"]
    assert epochs[-1]["sparsity"] == pytest.approx(0.8, abs=0.02)
    assert epochs[-1]["target_sparsity"] == pytest.approx(0.8)
    assert epochs[-1]["total"] == 16 * 12 + 12 * 4
    db = Database(api.settings.resolved_database_url)
    try:
        with db.session() as session:
            for epoch, masks in enumerate(expected, start=1):
                for name, mask in masks.items():
                    assert np.array_equal(mask_at(session, run.id, name, epoch), mask)
    finally:
        db.dispose()


def test_points_inside_an_epoch_are_stored_by_step_and_streamed(api: LiveApi, tmp_path: Path) -> None:
    with prunescope.init(name="points", api=api.url, token=TOKEN, dir=tmp_path) as run:
        for step in range(10):
            run.log(step=step, loss=1.0 / (step + 1))
        run.log(step=3, loss=9.0)  # a step logged again replaces the first value
        run.log(epoch=1, train_loss=0.2)
    with api.http() as http:
        points = http.get(f"/api/tracked-runs/{run.id}/points").json()["items"]
        events = http.get(f"/api/runs/{run.id}/events").text
    assert [p["step"] for p in points] == list(range(10))
    assert points[3]["values"] == {"loss": 9.0} and points[0]["epoch"] == 1
    assert "event: points" in events


def test_cancel_from_the_dashboard_raises_on_the_next_log(api: LiveApi, tmp_path: Path) -> None:
    run = prunescope.init(name="cancel-me", api=api.url, token=TOKEN, dir=tmp_path)
    run.log(epoch=1, train_loss=1.0)
    with api.http() as http:
        assert http.post(f"/api/runs/{run.id}/cancel").status_code == 200

    def cancelled_on_log() -> bool:
        try:
            run.log(step=int(time.monotonic() * 1000), loss=0.0)
        except prunescope.RunCancelled:
            return True
        return False

    with run:
        wait_for(cancelled_on_log)
    with api.http() as http:
        assert wait_for(lambda: http.get(f"/api/runs/{run.id}").json()["status"] == "cancelled")


def test_an_exception_in_the_script_ends_the_run_failed_with_the_reason(api: LiveApi, tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), prunescope.init(name="crash", api=api.url, token=TOKEN,
                                                              dir=tmp_path) as run:
        run.log(epoch=1, train_loss=0.5)
        _ = 1 / 0
    with api.http() as http:
        detail = http.get(f"/api/runs/{run.id}").json()
    assert detail["status"] == "failed" and detail["epochs_done"] == 1
    assert "ZeroDivisionError" in detail["error"]


def create_direct(api: LiveApi, **body: Any) -> dict[str, Any]:
    with api.http() as http:
        response = http.post("/api/tracked-runs", json={"name": "direct", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_only_the_lease_holder_writes_and_a_refused_write_stores_nothing(api: LiveApi) -> None:
    created = create_direct(api)
    batch = {"epochs": [{"epoch": 1, "train_loss": 0.3}]}
    with api.http() as http:
        path = f"/api/tracked-runs/{created['id']}/batch"
        assert http.post(path, json=batch).status_code == 409
        assert http.post(path, json=batch, headers={LEASE_HEADER: "x" * 43}).status_code == 409
        assert http.post(f"/api/tracked-runs/{created['id']}/finish", json={"status": "completed"}).status_code == 409
        assert http.get(f"/api/runs/{created['id']}/epochs").json()["items"] == []
        wrong = {"Authorization": "Bearer wrong", LEASE_HEADER: created["lease"]}
        no_token = http.post(path, json=batch, headers=wrong)
        assert no_token.status_code == 401
        worker_token = http.post("/api/tracked-runs", json={"name": "w"},
                                 headers={"Authorization": "Bearer worker-secret"})
        assert worker_token.status_code == 401
        assert http.post(path, json=batch, headers={LEASE_HEADER: created["lease"]}).status_code == 200


def test_a_create_retried_with_the_same_lease_answers_the_same_run(api: LiveApi) -> None:
    lease = "L" * 40
    first = create_direct(api, lease=lease)
    with api.http() as http:
        again = http.post("/api/tracked-runs", json={"name": "direct", "lease": lease})
    assert again.status_code == 200 and again.json()["id"] == first["id"] and again.json()["created"] is False


def test_batch_of_many_epochs_is_one_request_and_replays_never_duplicate(api: LiveApi) -> None:
    created = create_direct(api)
    layers = [{"name": f"l{i}.weight", "shape": [8, 8], "sparsity": 0.5, "pruned": 3, "regrown": 1, "threshold": 0.1}
              for i in range(20)]
    batch = {"epochs": [{"epoch": e, "train_loss": 1 / e, "test_acc": 0.9, "layers": layers} for e in range(1, 1001)],
             "epochs_total": 1000}
    with api.http() as http:
        headers = {LEASE_HEADER: created["lease"]}
        path = f"/api/tracked-runs/{created['id']}/batch"
        for _ in range(2):
            ack = http.post(path, content=orjson.dumps(batch), headers={**headers, "Content-Type": "application/json"})
            assert ack.status_code == 200, ack.text
            assert ack.json()["stored_epochs"] == 1000 and ack.json()["cancel"] is False
        items = http.get(f"/api/runs/{created['id']}/epochs").json()["items"]
        detail = http.get(f"/api/runs/{created['id']}").json()
    assert [e["epoch"] for e in items] == list(range(1, 1001))
    assert len(items[999]["layers"]) == 20 and detail["progress"] == 1.0


@pytest.mark.parametrize("body, loc", [
    ({"name": "bad\x00name"}, ["body", "name"]),
    ({"name": "x", "tags": ["ok", ""]}, ["body", "tags", 1]),
    ({"name": "x", "pruning": {"target_sparsity": 1.5}}, ["body", "pruning", "target_sparsity"]),
    ({"name": "x", "config": {"k": "nul\x00"}}, ["body", "config"]),
    ({"name": "x", "config": {"k": {"big": 2**64}}}, ["body", "config"]),
    ({"name": "x", "lease": "short"}, ["body", "lease"]),
    ({"name": "x", "surprise": 1}, ["body", "surprise"]),
])
def test_bad_create_bodies_get_a_located_422(api: LiveApi, body: dict[str, Any], loc: list[Any]) -> None:
    with api.http() as http:
        response = http.post("/api/tracked-runs", json=body)
    assert response.status_code == 422
    assert any(d["loc"][:len(loc)] == loc for d in response.json()["detail"]), response.json()


def test_lone_surrogates_and_bad_batches_are_refused_without_writing(api: LiveApi) -> None:
    created = create_direct(api)
    headers = {LEASE_HEADER: created["lease"], "Content-Type": "application/json"}
    path = f"/api/tracked-runs/{created['id']}/batch"
    with api.http() as http:
        surrogate = http.post("/api/tracked-runs", content=b'{"name": "x", "config": {"k": "\\ud800"}}',
                              headers={"Content-Type": "application/json"})
        assert surrogate.status_code == 422
        bad = [b'{"epochs": [{"epoch": 1, "extra": {"\\ud800": 1}}]}',
               b'{"epochs": [{"epoch": 1, "test_acc": 1.5}]}',
               b'{"epochs": [{"epoch": 1}, {"epoch": 2, "masks": {"l.weight": {"shape": [2, 2], "encoding": "delta",'
               b' "data": "AAAA"}}}]}',
               b'{"points": [{"step": -1, "values": {}}]}']
        for body in bad:
            assert http.post(path, content=body, headers=headers).status_code == 422, body
        assert http.get(f"/api/runs/{created['id']}/epochs").json()["items"] == []


def test_sdk_refuses_bad_input_with_the_apis_located_error(tmp_path: Path, dead_api: str) -> None:
    with pytest.raises(ValidationError) as bad_block:
        prunescope.init(name="x", api=dead_api, dir=tmp_path, pruning={"target_sparsity": 1.5})
    assert bad_block.value.errors()[0]["loc"] == ("target_sparsity",)
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValidationError) as engine_block:
        prunescope.Pruner(model, torch.optim.SGD(model.parameters(), lr=0.1), {"criterion": "nope"},
                          epochs=1, steps_per_epoch=1)
    assert engine_block.value.errors()[0]["loc"][0] == "criterion"
    with pytest.raises(ValidationError):
        prunescope.init(name="bad\x00", api=dead_api, dir=tmp_path, offline=True)
    with pytest.raises(ValueError, match="finite"):
        prunescope.init(name="x", config={"lr": float("inf")}, dir=tmp_path, offline=True)
    run = prunescope.init(name="x", dir=tmp_path, offline=True)
    with pytest.raises(ValidationError):
        run.log(epoch=1, test_acc=2.0)
    with pytest.raises(TypeError, match="not a number"):
        run.log(epoch=1, note="text")
    with pytest.raises(TypeError, match="grad_norms holds 3 values, not one number"):
        run.log(epoch=1, grad_norms=torch.ones(3))  # torch's own error named neither the key nor the fix
    with pytest.raises(TypeError, match="per_class holds 2 values"):
        run.log(epoch=1, per_class=np.array([0.5, 0.7]))
    run.log(epoch=1, one=torch.tensor([0.5]), scalar=np.float32(0.25))  # one value in any shape is one number
    with pytest.raises(TypeError, match=r"epoch= .* or step="):
        run.log(train_loss=1.0)
    run.finish()


def test_a_refused_epoch_log_leaves_the_watched_pruners_churn_for_the_corrected_one(tmp_path: Path) -> None:
    # log(epoch=0) (a 0-based loop) or accuracy in percent is refused; reading the churn had already reset it,
    # so the corrected log stored pruned=0 for the epoch.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = prunescope.Pruner(model, optimizer, {"target_sparsity": 0.5, "schedule": {"kind": "constant",
                                                                                       "start_epoch": 0}},
                               epochs=1, steps_per_epoch=1)
    run = prunescope.init(name="churn", dir=tmp_path, offline=True)
    run.watch(pruner)
    pruned = [layer.pruned for layer in pruner.layers]
    assert sum(pruned) > 0
    for bad in ({"epoch": 0}, {"epoch": 1, "test_acc": 87.5}):
        with pytest.raises(ValidationError):
            run.log(**bad)
        assert [layer.pruned for layer in pruner.layers] == pruned
    run.log(epoch=1, test_acc=0.875)
    assert [layer.pruned for layer in pruner.layers] == [0, 0]  # read once, by the log that was kept
    run.finish()


def test_a_value_the_api_would_refuse_is_refused_at_the_call_and_the_run_goes_on(api: LiveApi, tmp_path: Path) -> None:
    # An extra named with 101 characters, 600 extras, or an int of 2**70 passed log() and later failed the whole
    # flush (the epochs before it too): the run ended "failed: sent nothing" and sync failed with the same 422.
    with prunescope.init(name="refused-at-call", api=api.url, token=TOKEN, dir=tmp_path) as run:
        run.log(epoch=1, train_loss=1.0)
        with pytest.raises(ValidationError):
            run.log(epoch=2, **{"z" * 101: 1.0})
        with pytest.raises(ValidationError):
            run.log(epoch=2, **{f"m{i}": float(i) for i in range(600)})
        with pytest.raises(TypeError, match="too large for a float"):
            run.log(epoch=2, huge=10**400)
        run.log(epoch=2, train_loss=0.5, big=2**70)  # beyond 64 bits: sent as a float
    with api.http() as http:
        assert http.get(f"/api/runs/{run.id}").json()["status"] == "completed"
        epochs = http.get(f"/api/runs/{run.id}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[1]["extra"] == {"big": float(2**70)}


def _log_in_child(run: Any, errors: Any) -> None:
    try:
        run.log(epoch=2, train_loss=0.5)
    except RuntimeError as exc:
        errors.put(str(exc))


def _child_without_finish(url: str, spool: str, ids: Any) -> None:
    run = prunescope.init(name="child-no-finish", api=url, token=TOKEN, dir=spool)
    for epoch in (1, 2, 3):
        run.log(epoch=epoch, train_loss=1.0 / epoch)
    ids.put(run.id)  # returns without finish(): multiprocessing's exit runs no atexit hook


def test_runs_and_child_processes(api: LiveApi, tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_without_finish, args=(api.url, str(tmp_path), queue))
    child.start()
    run_id = queue.get(timeout=30)
    child.join(30)
    with api.http() as http:
        detail = wait_for(lambda: (d := http.get(f"/api/runs/{run_id}").json())["status"] == "completed" and d)
        assert detail["epochs_done"] == 3
    # A forked child logging to its parent's run: its records went nowhere, silently.
    with prunescope.init(name="parent", api=api.url, token=TOKEN, dir=tmp_path) as parent:
        parent.log(epoch=1, train_loss=1.0)
        errors = context.Queue()
        logger = context.Process(target=_log_in_child, args=(parent, errors))
        logger.start()
        logger.join(30)
        assert "start a run in the child with prunescope.init()" in errors.get(timeout=5)


def test_sys_exit_0_inside_a_run_is_a_completed_run(api: LiveApi, tmp_path: Path) -> None:
    with pytest.raises(SystemExit), prunescope.init(name="exit-0", api=api.url, token=TOKEN, dir=tmp_path) as run:
        run.log(epoch=1, train_loss=1.0)
        sys.exit(0)
    with pytest.raises(SystemExit), prunescope.init(name="exit-2", api=api.url, token=TOKEN, dir=tmp_path) as bad:
        sys.exit(2)
    with api.http() as http:
        assert http.get(f"/api/runs/{run.id}").json()["status"] == "completed"
        assert http.get(f"/api/runs/{bad.id}").json()["status"] == "failed"


def test_a_config_with_tuples_numpy_scalars_and_paths_is_stored_as_json(tmp_path: Path) -> None:
    run = prunescope.init(name="cfg", config={"betas": (0.9, 0.99), "lr": np.float32(0.5), "out": tmp_path / "x"},
                          dir=tmp_path, offline=True)
    assert run.config == {"betas": [0.9, 0.99], "lr": 0.5, "out": str(tmp_path / "x")}
    run.finish()


def test_the_csv_export_keeps_every_scalar_the_script_logged(api: LiveApi, tmp_path: Path) -> None:
    # README: "any other scalar is kept too"; the CSV had the fixed columns only and dropped them.
    with prunescope.init(name="extras", api=api.url, token=TOKEN, dir=tmp_path) as run:
        run.log(epoch=1, train_loss=1.0, grad_norm=3.0, **{"λ_loss": 0.5})
        run.log(epoch=2, train_loss=0.5, grad_norm=2.0, layer=7.0)  # a name the fixed columns hold
    with api.http() as http:
        text = http.get(f"/api/runs/{run.id}/export", params={"format": "csv"}).text
    header, first, second = [line.split(",") for line in text.strip().splitlines()]
    assert header[-3:] == ["grad_norm", "λ_loss", "extra.layer"]
    assert first[-3:] == ["3.0", "0.5", ""] and second[-3:] == ["2.0", "", "7.0"]


def test_a_run_whose_last_epoch_did_not_validate_keeps_the_newest_accuracy_and_completes_whole(
        api: LiveApi, tmp_path: Path) -> None:
    # Lightning validating every 2nd epoch (or max_steps ending mid-epoch) left test_acc null: "—" in the list,
    # absent from the Pareto front, and progress 0.75 for a completed run.
    model, optimizer, pruner = tiny_training(epochs=4)  # the watched pruner declares 4 epochs; 3 are trained
    with prunescope.init(name="no-val-last", api=api.url, token=TOKEN, dir=tmp_path) as run:
        run.watch(pruner)
        for epoch, acc in ((1, None), (2, 0.7), (3, None)):
            train_epoch(model, optimizer)
            run.log(epoch=epoch, train_loss=1.0 / epoch, **({"test_acc": acc} if acc is not None else {}))
    pruner.detach()
    with api.http() as http:
        detail = http.get(f"/api/runs/{run.id}").json()
    assert detail["status"] == "completed" and detail["test_acc"] == pytest.approx(0.7)
    assert detail["summary"]["final_test_acc"] == pytest.approx(0.7)
    assert detail["epochs_done"] == 3 and detail["progress"] == pytest.approx(1.0)
