"""`prunescope sync` on crafted or damaged spools: one line per bad spool, and the good ones still uploaded."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import prunescope
from prunescope import cli
from prunescope.sdk import spool as spooling
from tests.sdk.conftest import TOKEN, LiveApi

LEASE = "L" * 40


def spool(root: Path, name: str, meta: object, records: bytes | None = None) -> Path:
    path = root / name
    path.mkdir()
    (path / spooling.META).write_bytes(orjson.dumps(meta))
    if records is not None:
        (path / spooling.RECORDS).write_bytes(records)
    return path


def no_records_file(root: Path, name: str) -> Path:
    path = spool(root, name, {"name": name, "lease": LEASE + name[:4].ljust(4, "x")})
    (path / spooling.RECORDS).mkdir()
    return path


CRAFTED = {
    "no-lease": lambda root: spool(root, "no-lease", {"name": "a"}),
    "list-meta": lambda root: spool(root, "list-meta", [1, 2]),
    "text-offset": lambda root: spool(root, "text-offset", {"lease": LEASE, "run_id": "abc", "synced_bytes": "zz"}),
    "list-setup": lambda root: spool(root, "list-setup", {"name": "s", "lease": "S" * 40},
                                     b'{"t":"setup","r":[1]}\n'),
    "records-dir": lambda root: no_records_file(root, "records-dir"),
    "not-json": lambda root: spool(root, "not-json", {"name": "j", "lease": "J" * 40}, b'{"t":"finish","r":{]}\n'),
}
EXPECTED = {"no-lease": '"lease"', "list-meta": "not an object", "text-offset": '"run_id"',
            "list-setup": "line 1", "records-dir": "records.jsonl", "not-json": "not JSON"}


def sync_cli(api: LiveApi, path: Path) -> int:
    return cli.main(["--api", api.url, "--token", TOKEN, "sync", str(path)])


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_a_crafted_spool_fails_in_one_line_naming_it(api: LiveApi, tmp_path: Path, kind: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = CRAFTED[kind](tmp_path)
    assert sync_cli(api, path) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    [message] = captured.err.strip().splitlines()
    assert message.startswith(f"prunescope sync: {path}: ") and EXPECTED[kind] in message


def test_bad_spools_beside_a_good_one_do_not_stop_its_upload(api: LiveApi, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for make in CRAFTED.values():
        make(tmp_path)
    run = prunescope.init(name="good-beside-bad", dir=tmp_path, offline=True)
    run.log(epoch=1, train_loss=0.5)
    run.finish()
    assert sync_cli(api, tmp_path) == 1
    captured = capsys.readouterr()
    assert f"{run.spool.path}: run " in captured.out and "1 epochs, 0 points, completed" in captured.out
    assert len(captured.err.strip().splitlines()) == len(CRAFTED) and "Traceback" not in captured.err
    results = spooling.sync(tmp_path, api.url, TOKEN)
    assert [r.path.name for r in results if r.error is None] == [run.spool.path.name]
    assert all(r.skipped for r in results if r.error is None)


def test_a_spool_the_api_refuses_is_reported_and_the_rest_uploaded(api: LiveApi, tmp_path: Path) -> None:
    spool(tmp_path, "a-refused", {"name": "x" * 500, "lease": "R" * 40})
    run = prunescope.init(name="after-refused", dir=tmp_path, offline=True)
    run.log(epoch=1, train_loss=0.5)
    run.finish()
    results = {r.path.name: r for r in spooling.sync(tmp_path, api.url, TOKEN)}
    refused, good = results.pop("a-refused"), results[run.spool.path.name]
    assert refused.error is not None and "HTTP 422" in refused.error and refused.run_id is None
    assert good.error is None and good.epochs == 1 and good.run_id is not None
