"""Layer names are PyTorch parameter names: a path or a formula is refused at ingest, and the exports stay safe
for names stored before that check (no npz entry outside its folder, no CSV cell a spreadsheet runs)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select, update

from backend.tables import Epoch, MaskSnapshot
from prunescope import maskcodec
from prunescope.contract.tracking import TrackedEpoch
from prunescope.contract.worker_api import EpochReport
from tests.backend.conftest import claim, digits_config
from tests.backend.test_export import recorded_run

BAD_NAMES = ["\tx", "fc1.weight\n", "a\x00b", "\x7f"]  # control characters only: PostgreSQL refuses NUL
# Names PyTorch allows (it refuses only "" and "." in a module's name) are accepted; an npz entry is made safe from a
# path-like one, and a CSV cell from a formula.
GOOD_NAMES = ["../../../../tmp/x", "/etc/x", "blocks.enc/fc.weight", "a\\b", "features.0.weight",
              "blocks.3.attn.out_proj.weight", "_orig_mod.fc1.weight", "conv-1.weight", "w",
              "file", "allow_pickle", "conv 1.weight", "слой.weight", "=HYPERLINK(\"x\")", "+1", "-x", "@sum"]


def layer(name: str) -> dict[str, Any]:
    return {"name": name, "shape": [2, 2], "sparsity": 0.5, "pruned": 0, "regrown": 0, "threshold": None}


def mask_payload() -> dict[str, Any]:
    return maskcodec.encode(np.array([[True, False], [False, True]])).to_json()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_layer_name_with_control_characters_is_refused(name: str) -> None:
    for model, extra in ((TrackedEpoch, {}), (EpochReport, {"worker": "w"})):
        with pytest.raises(ValidationError):
            model.model_validate({"epoch": 1, "layers": [layer(name)], **extra})
        with pytest.raises(ValidationError):
            model.model_validate({"epoch": 1, "masks": {name: mask_payload()}, **extra})


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_pytorch_parameter_names_are_accepted(name: str) -> None:
    for model, extra in ((TrackedEpoch, {}), (EpochReport, {"worker": "w"})):
        model.model_validate({"epoch": 1, "layers": [layer(name)], "masks": {name: mask_payload()}, **extra})


def reported_layer(client: TestClient, name: str) -> int:
    """A run whose worker reported one epoch of one layer called `name`, with its mask."""
    run_id: int = client.post("/api/runs", json=digits_config()).json()["id"]
    leased = claim(client, run_id)
    body = {"worker": "w", "epoch": 1, "layers": [layer(name)], "masks": {name: mask_payload()}}
    assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=leased).status_code == 200
    return run_id


def test_a_worker_report_with_a_path_as_layer_name_exports_a_safe_npz_entry(client: TestClient) -> None:
    # A ModuleDict key may hold "/" (PyTorch refuses only "" and "."): the run records it, the npz names it safely.
    run_id = reported_layer(client, "blocks.../../tmp/x.weight")
    answer = client.get(f"/api/runs/{run_id}/export", params={"format": "npz"})
    assert zipfile.ZipFile(io.BytesIO(answer.content)).namelist() == ["blocks.tmp_x.weight.npy"]


def rename_stored_layer(client: TestClient, run_id: int, old: str, new: str) -> None:
    """As if `new` had been stored before layer names were checked."""
    with client.app.state.db.writing() as session:  # type: ignore[attr-defined]
        session.execute(update(MaskSnapshot).where(MaskSnapshot.run_id == run_id, MaskSnapshot.layer == old)
                        .values(layer=new))
        for row in session.scalars(select(Epoch).where(Epoch.run_id == run_id)):
            row.layers = [{**stats, "name": new if stats["name"] == old else stats["name"]} for stats in row.layers]


def test_npz_entries_of_names_stored_before_stay_inside_the_archive_folder(client: TestClient) -> None:
    run_id, sent = recorded_run(client)
    rename_stored_layer(client, run_id, "fc1.weight", "../../../../tmp/x")
    answer = client.get(f"/api/runs/{run_id}/export", params={"format": "npz"})
    assert answer.status_code == 200
    entries = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert entries == ["tmp_x.npy", "fc2.weight.npy"]
    with np.load(io.BytesIO(answer.content)) as archive:
        np.testing.assert_array_equal(archive["tmp_x"], sent[3]["fc1.weight"])
        np.testing.assert_array_equal(archive["fc2.weight"], sent[3]["fc2.weight"])


def test_npz_keys_are_unique_and_plain_names_kept() -> None:
    from backend.results.service import npz_keys

    assert npz_keys(["x", "../x", "/x", "fc1.weight", "/", "a/../b", "blocks.enc/fc.weight"]) == [
        "x", "x_2", "x_3", "fc1.weight", "layer", "a.b", "blocks.enc_fc.weight"]


def test_npz_export_of_layers_named_like_savez_arguments(client: TestClient) -> None:
    run_id = client.post("/api/runs", json=digits_config()).json()["id"]
    leased = claim(client, run_id)
    names = ["file", "allow_pickle"]
    body = {"worker": "w", "epoch": 1, "layers": [layer(n) for n in names], "masks": {n: mask_payload() for n in names}}
    assert client.post(f"/api/worker/runs/{run_id}/epochs", json=body, headers=leased).status_code == 200
    answer = client.get(f"/api/runs/{run_id}/export", params={"format": "npz"})
    assert answer.status_code == 200
    with np.load(io.BytesIO(answer.content)) as archive:
        assert sorted(archive.files) == sorted(names)


def test_csv_cells_a_spreadsheet_would_run_get_a_leading_quote(client: TestClient) -> None:
    run_id, _ = recorded_run(client)
    rename_stored_layer(client, run_id, "fc1.weight", '=HYPERLINK("http://evil","x")')
    rename_stored_layer(client, run_id, "fc2.weight", "@SUM(A1)")
    answer = client.get(f"/api/runs/{run_id}/export", params={"format": "csv"})
    frame = pd.read_csv(io.StringIO(answer.text))
    assert frame["layer"].tolist()[:2] == ['\'=HYPERLINK("http://evil","x")', "'@SUM(A1)"]
    assert all(not str(cell).startswith(("=", "+", "-", "@")) for cell in frame["layer"])


def test_a_layer_whose_name_holds_a_slash_can_be_inspected(client: TestClient) -> None:
    # A ModuleDict's `enc/fc` was recorded but 404 on every per-layer endpoint (Starlette decodes %2F first).
    name = "blocks.enc/fc.weight"
    run_id = reported_layer(client, name)
    quoted = "blocks.enc%2Ffc.weight"
    for path in (f"masks/{quoted}", f"masks/{quoted}/changes", f"masks/{quoted}/stability", f"layers/{quoted}",
                 f"masks/{name}"):
        answer = client.get(f"/api/runs/{run_id}/{path}", params={"epoch": 1})
        assert answer.status_code == 200, (path, answer.text)
    assert client.get(f"/api/runs/{run_id}/masks/{quoted}").json()["layer"] == name
    assert client.get(f"/api/runs/{run_id}/masks/fc9.weight").status_code == 404
