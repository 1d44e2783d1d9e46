"""What happens to runs: submission, status changes, cancel; each change also lands in the run's event stream."""

from __future__ import annotations

import gzip
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy.orm import Session

from backend.db import Database
from backend.errors import Conflict
from backend.events import record_event
from backend.responses import encoded, gzip_sent, wants_gzip
from backend.runs import repository
from backend.runs.schemas import RunDetail, RunListItem, RunPatch
from backend.tables import Epoch, Run, utcnow
from prunescope.contract.config import RunConfig
from prunescope.contract.queue import queue_for
from prunescope.contract.records import EpochMetrics, LayerStats, RunSummary
from prunescope.contract.status import FINISHED_STATUSES as FINISHED

log = logging.getLogger(__name__)


def create_run(session: Session, config: RunConfig, *, sweep_id: int | None = None) -> Run:
    """Store a validated config as a queued run (the caller commits; the dispatcher queues it)."""
    run = Run(
        name=config.name, tags=list(config.tags), config=config.model_dump(mode="json"),
        strategy=config.strategy(), preset=config.preset, device=config.device,
        model_name=config.model.name, dataset_name=config.dataset.name,
        epochs_total=config.training.epochs, status="queued", notes="", sweep_id=sweep_id,
        # A cpu or cuda run's queue is known now (the page can say when no online worker takes it); `auto` is
        # decided when the dispatcher sends it, by whether a GPU worker is online then.
        queue=None if config.device == "auto" else queue_for(config.device, gpu_worker_online=False),
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    record_event(session, run.id, "status", status_payload(run))
    return run


def status_payload(run: Run, reason: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"status": run.status, "epochs_done": run.epochs_done,
                               "epochs_total": run.epochs_total, "worker": run.worker, "error": run.error,
                               "attempts": run.attempts, "cancel_requested": run.cancel_requested}
    if reason:
        payload["reason"] = reason
    return payload


def set_status(session: Session, run: Run, status: str, *, reason: str | None = None, error: str | None = None) -> None:
    """Move a run to `status`, stamping times and recording a `status` event."""
    run.status = status
    now = utcnow()
    if status == "running" and run.started_at is None:
        run.started_at = now
    if status in FINISHED:
        run.finished_at = now
    if error is not None:
        run.error = error
    record_event(session, run.id, "status", status_payload(run, reason))


def progress_after(epochs: Sequence[EpochMetrics], epochs_done: int, best_test_acc: float | None) -> dict[str, Any]:
    """The run columns recording `epochs` (in epoch order) changes: the newest epoch's progress unless the run has
    recorded a later one, and the best test accuracy when one of them beats the run's."""
    progress: dict[str, Any] = {}
    newest = epochs[-1]
    if newest.epoch >= epochs_done:
        progress.update(epochs_done=newest.epoch, sparsity=newest.sparsity, test_acc=newest.test_acc)
    best = max((epoch.test_acc for epoch in epochs if epoch.test_acc is not None), default=None)
    if best is not None and (best_test_acc is None or best > best_test_acc):
        progress["best_test_acc"] = best
    return progress


def apply_summary(run: Run, summary: RunSummary, status: str) -> None:
    """Keep how a run ended. The list's sparsity and accuracy columns take the summary's final figures only for
    a completed run (or one that recorded no epoch, unless the summary says it trained none: a run cancelled
    before its first epoch measured nothing, and 0 % would sort it as the worst run): a cancelled or failed run
    keeps its last recorded epoch's, so its header, list row and last epoch agree."""
    doc = summary.model_dump(mode="json", exclude_unset=True)
    run.summary = doc
    finals = status == "completed" or (not run.epochs_done and doc.get("epochs_done") != 0)
    for key, column in (("final_sparsity", "sparsity"), ("final_test_acc", "test_acc")):
        value = doc.get(key)
        if finals and isinstance(value, int | float):
            setattr(run, column, float(value))
    best = doc.get("best_test_acc")
    if isinstance(best, int | float) and (finals or (run.best_test_acc is not None and best > run.best_test_acc)):
        run.best_test_acc = float(best)


def cancel_run(session: Session, run: Run) -> None:
    """A queued run is cancelled at once; a running one is asked to stop (its worker finishes it)."""
    if run.status in FINISHED:
        raise Conflict(f"run {run.id} is already {run.status}")
    if run.status == "queued":
        set_status(session, run, "cancelled", reason="cancelled before it started")
    else:
        run.cancel_requested = True
        record_event(session, run.id, "status", status_payload(run, "cancel requested"))


EPOCH_SCALARS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "sparsity", "target_sparsity",
                 "nonzero", "total", "epoch_seconds", "samples_per_s", "attempt")
HistoryLayout = Literal["records", "columns"]
LAYER_DEFAULTS: dict[str, Any] = {"pruned": 0, "regrown": 0, "threshold": None, "histogram": None}
LAYER_FIELDS = len(LayerStats.model_fields)


def _complete(layer: dict[str, Any]) -> dict[str, Any]:
    """Stored stats are complete unless written before a field existed: only those are filled in."""
    return layer if len(layer) == LAYER_FIELDS else {**LAYER_DEFAULTS, **layer}


def epoch_document(row: Epoch) -> dict[str, Any]:
    """An epoch as `EpochRecord` serialises it, without validating again what the report already validated:
    a 1000-epoch, 20-layer run would otherwise spend hundreds of milliseconds in 20 000 LayerStats."""
    doc = {name: getattr(row, name) for name in EPOCH_SCALARS}
    doc["layers"] = [_complete(layer) for layer in row.layers]
    doc["extra"] = row.extra or None  # a tracked run's scalars that are not record columns
    return doc


# Stored layer stats are `LayerStats.model_dump()`s, which write every field in declaration order, and fields are
# only ever appended: a stored layer holding the last field holds them all (LAYER_DEFAULTS fills older ones).
NEWEST_LAYER_KEY = f'"{list(LayerStats.model_fields)[-1]}":'
EMPTY_EXTRA = frozenset({"{}", "null"})


def _stored_layers(text: str) -> orjson.Fragment | list[dict[str, Any]]:
    """A row's stored layer stats as the answer carries them: the stored text itself when every layer is complete.

    Counting keys in the text is exact: in JSON text a quote inside a string is escaped, so `"name":` and the
    newest key's `"...":` occur only as keys (and `name` only at the layer level)."""
    if text.count(NEWEST_LAYER_KEY) == text.count('"name":'):
        return orjson.Fragment(text)
    return [_complete(layer) for layer in orjson.loads(text)]


def epochs_json(run_id: int, rows: Iterable[Sequence[Any]]) -> bytes:
    """The history document (`EpochList`) as JSON: for rows of `EPOCH_SCALARS`, then the layers' and the extra
    scalars' stored JSON text (`repository.list_epoch_texts`), the same document `epoch_document` builds.

    The stored JSON is spliced in as it is, not decoded and encoded again: the API wrote it from validated
    records, and a 1000-epoch, 20-layer run holds 20 000 layer records (2.7 MB of them)."""
    width = len(EPOCH_SCALARS)
    items = []
    for row in rows:
        doc = dict(zip(EPOCH_SCALARS, row[:width], strict=True))
        doc["layers"] = _stored_layers(row[width])
        extra = row[width + 1]
        doc["extra"] = None if extra is None or extra in EMPTY_EXTRA else orjson.Fragment(extra)
        items.append(doc)
    return orjson.dumps({"run_id": run_id, "items": items})


LAYER_SERIES = tuple(name for name in LayerStats.model_fields if name not in ("name", "shape"))


def epochs_columns_json(run_id: int, rows: Iterable[Sequence[Any]]) -> bytes:
    """The history as `EpochColumns` (`?layout=columns`) from the same rows as `epochs_json`: one array per run
    scalar, per layer stat and per extra scalar, aligned by epoch (null where an epoch lacks a layer or scalar)."""
    width = len(EPOCH_SCALARS)
    columns: dict[str, list[Any]] = {name: [] for name in EPOCH_SCALARS}
    layers: dict[str, dict[str, Any]] = {}
    extra: dict[str, list[Any]] = {}
    count = 0
    for row in rows:
        for name, value in zip(EPOCH_SCALARS, row[:width], strict=True):
            columns[name].append(value)
        seen: set[str] = set()
        for layer in orjson.loads(row[width]):
            name = layer["name"]
            if name in seen:
                continue
            seen.add(name)
            series = layers.get(name)
            if series is None:
                series = layers[name] = {"shape": None, **{f: [None] * count for f in LAYER_SERIES}}
            series["shape"] = layer["shape"]
            for field in LAYER_SERIES:
                series[field].append(layer.get(field, LAYER_DEFAULTS.get(field)))
        for name, series in layers.items():  # a layer this epoch did not report
            if name not in seen:
                for field in LAYER_SERIES:
                    series[field].append(None)
        text = row[width + 1]
        scalars = orjson.loads(text) if text and text not in EMPTY_EXTRA else {}
        for name, value in scalars.items():
            extra.setdefault(name, [None] * count).append(value)
        for name, values in extra.items():
            if name not in scalars:
                values.append(None)
        count += 1
    return orjson.dumps({"run_id": run_id, "columns": columns, "layers": layers, "extra": extra})


Sent = tuple[bytes, dict[str, str]]  # a body as sent, and its headers


HistoryKey = tuple[str, int, bool, str]  # database, run, gzipped, layout


class HistoryCache:
    """The last few large histories served, as sent (JSON, or gzipped), by database and run: an entry serves while
    its run's epochs keep the fingerprint it was built at, so re-reading a finished run's megabytes of history
    costs one indexed query. Per process, and checked against the database on every read (other processes write
    too)."""

    MIN_BYTES = 64 * 1024  # smaller histories are cheap to build again

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: OrderedDict[HistoryKey, tuple[tuple[Any, ...], Sent]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: HistoryKey, fingerprint: tuple[Any, ...]) -> Sent | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry[0] != fingerprint:
                return None
            self.entries.move_to_end(key)
            return entry[1]

    def put(self, key: HistoryKey, fingerprint: tuple[Any, ...], sent: Sent) -> None:
        if len(sent[0]) < self.MIN_BYTES:
            return
        with self.lock:
            self.entries[key] = (fingerprint, sent)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


HISTORIES = HistoryCache()


def history_body(session: Session, database: str, run_id: int,
                 accept_encoding: str, layout: HistoryLayout = "records") -> Sent | None:
    """`GET /api/runs/{id}/epochs` as sent: the run's history in `layout`, gzipped when the client accepts it, from
    the cache while the run's epochs are unchanged (`database` names the database in the cache's keys); None when
    there is no such run."""
    gzipped = wants_gzip(accept_encoding)
    key = (database, run_id, gzipped, layout)
    fingerprint = repository.epochs_fingerprint(session, run_id)
    if not fingerprint[0] and repository.get_run(session, run_id) is None:  # no epochs: is there a run at all?
        return None
    sent = HISTORIES.get(key, fingerprint)
    if sent is not None:
        return sent
    sent = _kept_history(session, run_id, layout, fingerprint, gzipped)
    if sent is None:
        # Level 1: a history is megabytes of JSON; level 1 compresses it to a sixth at a fraction of level 6's
        # time, and on a local network sending the rest costs less than compressing harder.
        rows = repository.list_epoch_texts(session, run_id, EPOCH_SCALARS)
        sent = encoded(HISTORY_BUILDERS[layout](run_id, rows), gzipped, level=1)
    HISTORIES.put(key, fingerprint, sent)
    return sent


HISTORY_BUILDERS: dict[str, Callable[[int, Sequence[Sequence[Any]]], bytes]] = {
    "records": epochs_json, "columns": epochs_columns_json}


def _fingerprint_text(fingerprint: tuple[Any, ...]) -> str:
    return orjson.dumps(list(fingerprint)).decode()


def _kept_history(session: Session, run_id: int, layout: HistoryLayout, fingerprint: tuple[Any, ...],
                  gzipped: bool) -> Sent | None:
    """The answer `keep_history` stored when the run ended, while the run's epochs are as they were then."""
    kept = repository.stored_history(session, run_id, layout)
    if kept is None or kept[0] != _fingerprint_text(fingerprint):
        return None
    return gzip_sent(kept[1]) if gzipped else encoded(gzip.decompress(kept[1]), False)


EPOCH_SCALARS_BYTES = 1024  # more than one epoch's record takes besides its layer stats and extra scalars


def history_worth_keeping(session: Session, run: Run) -> bool:
    """Whether an ended run's history may reach `HistoryCache.MIN_BYTES`, asked in its finish's transaction (one
    aggregate over its epochs): a short sweep run's never does, and then its finish schedules no `keep_history`
    at all (a session, the run and its fingerprint, ~1 ms of the API's CPU a run, for nothing to keep).
    `epochs_done`, the newest epoch, bounds how many epochs are stored."""
    return run.epochs_done * EPOCH_SCALARS_BYTES + repository.epochs_text_bytes(session, run.id) \
        >= HistoryCache.MIN_BYTES


def keep_history(db: Database, run_id: int) -> None:
    """Once a run has ended (a background task of its finish, when `history_worth_keeping`: it runs after the
    answer, so after the commit): store its history answers, both layouts gzipped, when they are large
    (`HistoryCache.MIN_BYTES`), so that the run's first read, after a restart too, is one row.

    Built from a read transaction and written in a short write transaction of its own: the build (about 0.1 s
    for 1000 epochs x 20 layers) never holds SQLite's write lock. An epoch written in between only makes the
    stored fingerprint stale (reads then build afresh, as before). Never raises: the run has ended whatever
    happens here, and a history not kept is built on its first read."""
    try:
        _keep_history(db, run_id)
    except Exception:
        log.exception("run %s: its history answers were not kept; its first read will build them", run_id)


def _keep_history(db: Database, run_id: int) -> None:
    with db.session() as session:
        run = repository.get_run(session, run_id)
        if run is None or run.status not in FINISHED:
            return
        fingerprint = _fingerprint_text(repository.epochs_fingerprint(session, run_id))
        if repository.kept_fingerprints(session, run_id) == {fingerprint}:
            return  # kept already: a finish repeated (a replayed `prunescope sync`) builds nothing again
        rows = repository.list_epoch_texts(session, run_id, EPOCH_SCALARS)
    bodies = {}
    for layout, build in HISTORY_BUILDERS.items():
        body = build(run_id, rows)
        if len(body) >= HistoryCache.MIN_BYTES:  # a small one is not kept: it builds in a few milliseconds
            bodies[layout] = gzip.compress(body, compresslevel=1, mtime=0)  # always: it is served as gzip
    if bodies:
        with db.writing() as session:
            repository.keep_histories(session, run_id, fingerprint, bodies)


def update_run(run: Run, patch: RunPatch) -> None:
    """Apply the fields a PATCH names (the schema refuses explicit nulls)."""
    if patch.name is not None:
        run.name = patch.name
    if patch.tags is not None:
        run.tags = list(patch.tags)
    if patch.notes is not None:
        run.notes = patch.notes


def delete_run(session: Session, run: Run) -> None:
    """Delete a finished run and everything it recorded (the caller removes its artifact files after commit)."""
    if run.status not in FINISHED:
        raise Conflict(f"run {run.id} is {run.status}: cancel it first")
    repository.delete_run(session, run.id)


def eta_seconds(run: Run, now: datetime | None = None) -> float | None:
    if run.status != "running" or not run.started_at or run.epochs_done <= 0:
        return None
    elapsed = ((now or datetime.now(UTC)) - run.started_at).total_seconds()
    return max(0.0, elapsed / run.epochs_done * (run.epochs_total - run.epochs_done))


def to_summary(run: Run) -> RunListItem:
    return RunListItem(**_summary_fields(run))


def to_detail(run: Run) -> RunDetail:
    return RunDetail(**_summary_fields(run), config=run.config, notes=run.notes, summary=run.summary)


def _summary_fields(run: Run) -> dict[str, Any]:
    return {
        "id": run.id, "name": run.name, "tags": run.tags, "status": run.status, "strategy": run.strategy,
        "preset": run.preset, "device": run.device, "queue": run.queue, "model": run.model_name,
        "dataset": run.dataset_name, "created_at": run.created_at, "started_at": run.started_at,
        "finished_at": run.finished_at, "epochs_total": run.epochs_total, "epochs_done": run.epochs_done,
        "progress": run.epochs_done / run.epochs_total if run.epochs_total else 0.0,
        "eta_seconds": eta_seconds(run), "sparsity": run.sparsity, "test_acc": run.test_acc,
        "best_test_acc": run.best_test_acc, "worker": run.worker, "attempts": run.attempts,
        "cancel_requested": run.cancel_requested, "error": run.error, "sweep_id": run.sweep_id,
        "kind": run.kind,
    }
