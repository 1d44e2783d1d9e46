"""The fault suite's stack: the integration stack with a 3 s heartbeat timeout and the API's own artifact dir."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stack

HEARTBEAT_TIMEOUT = 3.0
EPOCHS = 16
ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


class FaultStack(Stack):
    """A stack whose API keeps artifacts apart from the workers' spools (as on separate hosts)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.env.update({"PRUNESCOPE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                         "PRUNESCOPE_HEARTBEAT_SECONDS": "0.5",
                         "PRUNESCOPE_CHECKPOINT_SECONDS": "0"})  # a checkpoint every epoch: re-runs at most one
        self.api_artifacts = tmp / "api-artifacts"
        self.api_env["PRUNESCOPE_ARTIFACT_DIR"] = str(self.api_artifacts)

    def answers(self) -> list[tuple[str, str, int]]:
        """Every request the API answered so far (method, path, status), from its access logs."""
        return [(m["method"], m["path"], int(m["status"])) for m in ACCESS.finditer(
            (self.tmp / "api.log").read_text(errors="replace"))]

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.http.get(f"/api/runs/{run_id}/epochs").json()["items"]
        return items

    def assert_intact(self, run_id: int, status: str = "completed", epochs: int = EPOCHS,
                      allowed_5xx: frozenset[int] = frozenset()) -> dict[str, Any]:
        """The final status, epochs exactly 1..N once each, every mask decodes, no unexpected 5xx."""
        run = self.wait_status(run_id, ("completed", "failed", "cancelled"), timeout=180)
        assert run["status"] == status, (run, self.logs())
        recorded = self.epochs(run_id)
        assert [e["epoch"] for e in recorded] == list(range(1, epochs + 1)), self.logs()
        layers = self.http.get(f"/api/runs/{run_id}/masks").json()["layers"]
        assert layers and all(layer["epochs"] == list(range(1, epochs + 1)) for layer in layers)
        for layer in layers:
            for epoch in layer["epochs"]:
                grid = self.http.get(f"/api/runs/{run_id}/masks/{layer['name']}", params={"epoch": epoch})
                assert grid.status_code == 200, (layer["name"], epoch, grid.text)
        server_errors = [a for a in self.answers() if a[2] >= 500 and a[2] not in allowed_5xx]
        assert server_errors == [], server_errors
        return run


@pytest.fixture
def faults(tmp_path: Path) -> Iterator[FaultStack]:
    s = FaultStack(tmp_path)
    try:
        s.start_redis()
        s.start_api()
        yield s
    finally:
        s.close()


def quick_run(epochs: int = EPOCHS) -> dict[str, Any]:
    """Digits, a pruned LeNet-300-100 with regrowth (masks change every epoch): about 0.3 s an epoch."""
    return {"name": "fault", "device": "cpu", "model": {"name": "lenet300_100"}, "dataset": {"name": "digits"},
            "training": {"epochs": epochs, "batch_size": 64, "lr": 0.05},
            "pruning": {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 1,
                                                              "end_epoch": epochs // 2, "every_steps": 5}}}
