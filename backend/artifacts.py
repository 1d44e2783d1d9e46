"""Where a run's files live: one folder per run under the artifact dir, fixed file names only."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

ArtifactName = Literal["checkpoint.pt", "model.pt"]


def run_dir(artifact_dir: Path, run_id: int) -> Path:
    root = artifact_dir.resolve()
    path = (root / "runs" / str(int(run_id))).resolve()
    # run ids are integers and names come from a fixed list, but keep the guarantee local and explicit.
    if root not in path.parents:
        raise ValueError("artifact path escapes the artifact directory")
    return path


def artifact_path(artifact_dir: Path, run_id: int, name: ArtifactName) -> Path:
    if name not in ("checkpoint.pt", "model.pt"):
        raise ValueError(f"unknown artifact {name!r}")
    return run_dir(artifact_dir, run_id) / name


def delete_run_artifacts(artifact_dir: Path, run_id: int) -> None:
    shutil.rmtree(run_dir(artifact_dir, run_id), ignore_errors=True)
