"""The offline spool: a directory per run holding its metadata and its records as append-only JSON lines,
and `sync`, which uploads a spool (idempotently: a second sync, or one cut off halfway, duplicates nothing)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from prunescope.contract.tracking import LEASE_PATTERN
from prunescope.sdk.transport import ApiUnreachable, TrackingError, Transport, batch_bodies

META = "run.json"
RECORDS = "records.jsonl"
# Line prefixes, so that `sync` slices the record out without parsing and re-serialising it.
EPOCH, POINT, SETUP, FINISH = (b'{"t":"epoch","r":', b'{"t":"point","r":', b'{"t":"setup","r":',
                               b'{"t":"finish","r":')


class SpoolError(ValueError):
    """A spool `sync` cannot read (a damaged or hand-made file); the message says which file and what is wrong."""


def run_dir_name(name: str, lease: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{lease[:8]}"


class Spool:
    """One run's spool directory; created on first use (a run that never goes offline leaves nothing behind)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        self._handle: Any = None

    @property
    def used(self) -> bool:
        return self._handle is not None or (self.path / RECORDS).exists()

    def _open(self) -> Any:
        if self._handle is None:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            meta_path = self.path / META
            if not meta_path.exists():
                write_meta(self.path, self.meta)
            self._handle = open(self.path / RECORDS, "ab")  # noqa: SIM115 (kept open for the run's life)
        return self._handle

    def append(self, lines: list[bytes]) -> None:
        """Append records (each already a full line); flushed to the OS, so a crash of Python loses none."""
        if not lines:
            return
        handle = self._open()
        handle.write(b"".join(lines))
        handle.flush()

    def close(self) -> None:
        """fsync and close: what the spool holds survives a power cut once the run has finished."""
        if self._handle is not None:
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None


def line(prefix: bytes, record: bytes) -> bytes:
    return prefix + record + b"}\n"


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Replace run.json atomically (readable only by its owner: it holds the run's lease)."""
    tmp = path / f".{META}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path / META)


@dataclass
class SyncResult:
    path: Path
    run_id: int | None
    epochs: int
    points: int
    finished: str | None
    skipped: bool = False
    error: str | None = None  # why this spool was not uploaded (the others still were)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpoolError(f"{path.name} cannot be read ({exc.strerror or exc})") from exc


def read_meta(path: Path) -> dict[str, Any]:
    """A spool's run.json, checked for the fields `sync` relies on."""
    try:
        meta = orjson.loads(_read(path / META))
    except orjson.JSONDecodeError as exc:
        raise SpoolError(f"{META} is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise SpoolError(f"{META} holds a JSON {type(meta).__name__}, not an object")
    if not isinstance(meta.get("lease"), str) or not re.fullmatch(LEASE_PATTERN, meta["lease"]):
        raise SpoolError(f'{META} has no valid "lease" (32 to 64 of A-Z a-z 0-9 _ -)')
    for key in ("run_id", "synced_bytes"):
        value = meta.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise SpoolError(f'{META}: "{key}" is {value!r:.40}, not a whole number >= 0')
    return meta


def _record(path: Path, number: int, row: bytes, prefix: bytes) -> Any:
    try:
        record = orjson.loads(row[len(prefix):-1])
    except orjson.JSONDecodeError as exc:
        raise SpoolError(f"{path.name} line {number}: not JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise SpoolError(f"{path.name} line {number}: the record is a JSON {type(record).__name__}, not an object")
    return record


def read_records(path: Path, start: int = 0) -> tuple[list[bytes], list[bytes], dict[str, Any], Any, int]:
    """Epoch and point records (raw JSON), the merged setup, the finish record, and the offset read up to.

    A torn last line (the process died mid-write) is left for a later sync, never half-sent."""
    records = path / RECORDS
    raw = _read(records) if records.exists() else b""
    end = raw.rfind(b"\n") + 1
    epochs: list[bytes] = []
    points: list[bytes] = []
    setup: dict[str, Any] = {}
    finish = None
    first = raw[:start].count(b"\n") + 1
    for number, row in enumerate(raw[start:end].split(b"\n"), start=first):
        if row.startswith(EPOCH):
            epochs.append(row[len(EPOCH):-1])
        elif row.startswith(POINT):
            points.append(row[len(POINT):-1])
        elif row.startswith(SETUP):
            setup.update(_record(records, number, row, SETUP))
        elif row.startswith(FINISH):
            finish = _record(records, number, row, FINISH)
        elif row.strip():
            raise SpoolError(f"{RECORDS} line {number}: unreadable {row[:60]!r}")
    return epochs, points, setup, finish, end


def upload(path: Path, transport: Transport, meta: dict[str, Any], start: int = 0) -> SyncResult:
    """Send a spool's records from byte `start` on to the run its lease created (creating it if needed)."""
    epochs, points, setup, finish, end = read_records(path, start)
    created = transport.create({key: meta[key] for key in ("name", "tags", "config", "lease", "host", "epochs",
                                                           "pruning", "started_at") if meta.get(key) is not None})
    run_id = int(created["id"])
    for body in batch_bodies(epochs, points, setup or None):
        transport.batch(run_id, body)
    if finish is not None:
        transport.finish(run_id, finish)
    meta.update(run_id=run_id, synced_bytes=end)
    write_meta(path, meta)
    status = finish.get("status") if finish else None
    return SyncResult(path, run_id, len(epochs), len(points), status if isinstance(status, str) else None)


def spool_dirs(path: Path) -> list[Path]:
    """`path` itself when it is one run's spool, else every run spool directly inside it."""
    if (path / META).exists():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a spool directory (no {META} in it or below it)")
    return sorted(p for p in path.iterdir() if (p / META).exists())


def sync(path: Path | str, api: str, token: str | None = None, *, force: bool = False) -> list[SyncResult]:
    """Upload every spool under `path`; a spool already uploaded up to its end is skipped unless `force`.

    A spool that cannot be read, or whose records the API refuses, gets a result with `error` set and the
    others are still uploaded; an unreachable API raises `ApiUnreachable` (the rest would fail the same way)."""
    results = []
    for run_path in spool_dirs(Path(path)):
        try:
            results.append(_sync_one(run_path, api, token, force))
        except (SpoolError, TrackingError) as exc:
            results.append(SyncResult(run_path, None, 0, 0, None, error=str(exc)))
        except OSError as exc:  # e.g. run.json cannot be rewritten: the upload happened, the record of it did not
            where = f" ({exc.filename})" if exc.filename else ""
            results.append(SyncResult(run_path, None, 0, 0, None, error=f"{exc.strerror or exc}{where}"))
    return results


def _sync_one(run_path: Path, api: str, token: str | None, force: bool) -> SyncResult:
    meta = read_meta(run_path)
    records = run_path / RECORDS
    if records.exists() and not records.is_file():
        raise SpoolError(f"{RECORDS} is not a file")
    size = records.stat().st_size if records.exists() else 0
    if not force and meta.get("run_id") and meta.get("synced_bytes", -1) >= size:
        return SyncResult(run_path, meta["run_id"], 0, 0, None, skipped=True)
    transport = Transport(api, token, meta["lease"], timeout=60)
    try:
        return upload(run_path, transport, meta)
    finally:
        transport.close()


__all__ = ["ApiUnreachable", "Spool", "SpoolError", "SyncResult", "spool_dirs", "sync", "upload"]
