"""`prunescope.init()` and the tracked `Run`: log epochs and in-epoch points from any training script."""

from __future__ import annotations

import atexit
import decimal
import math
import multiprocessing.util
import numbers
import os
import secrets
import socket
import sys
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from prunescope.config import get_settings
from prunescope.contract.config import PruningConfig, parse_pruning
from prunescope.contract.records import EpochMetrics
from prunescope.contract.tracking import TrackedEpoch, TrackedPoint, TrackedRunCreate
from prunescope.sdk import endings
from prunescope.sdk import spool as spooling
from prunescope.sdk.sender import Sender
from prunescope.sdk.transport import ApiUnreachable, RunCancelled, TrackingError, Transport

RECORD_FIELDS = frozenset(EpochMetrics.model_fields) - {"epoch"}
# Held strongly until finished: a run made in a function that returns without finish() (a multiprocessing child's
# target, say) is still finished at exit, with what it logged.
_open_runs: set[Run] = set()


def _array_size(value: Any) -> int | None:
    """How many values a numpy scalar, array or tensor holds (None for anything else)."""
    if isinstance(value, bool | int | float | str) or not callable(getattr(value, "item", None)):
        return None
    return int(value.numel() if hasattr(value, "numel") else getattr(value, "size", 1))  # a tensor's, an array's


def _scalar(name: str, value: Any) -> float | int | None:
    """A logged value as a JSON number: Python and numpy numbers, 0-d tensors; NaN/inf become null."""
    if value is None:
        return None
    count = _array_size(value)
    if count is not None:  # numpy scalars, 0-d arrays and tensors
        if count != 1:
            raise TypeError(f"run.log: {name} holds {count} values, not one number (log each, or a mean)")
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if -2**63 <= value < 2**63:
            return value
        try:  # beyond 64 bits: JSON numbers are sent as floats (the sender could not encode the int at all)
            return float(value)
        except OverflowError:
            raise TypeError(f"run.log: {name} is an integer too large for a float "
                            f"({value.bit_length()} bits)") from None
    if isinstance(value, numbers.Real | decimal.Decimal) and not isinstance(value, float):
        try:  # Fraction, Decimal: Python numbers too ("is not a number" before)
            value = float(value)
        except (OverflowError, ValueError):
            raise TypeError(f"run.log: {name}={value!r} is too large for a float") from None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"run.log: {name}={value!r} is not a number")


def _plain(value: Any) -> Any:
    """A config as JSON takes it: tuples as lists, numpy/torch scalars as numbers, paths as text. Anything else is
    left for the contract to refuse by name."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value.item() if _array_size(value) == 1 else value


class Run:
    """A tracked run. Create it with `prunescope.init(...)`; `log` never waits on the network."""

    def __init__(self, name: str = "untitled", config: dict[str, Any] | None = None, tags: list[str] | None = None,
                 api: str | None = None, token: str | None = None, *, dir: str | Path | None = None,
                 offline: bool = False, epochs: int | None = None, pruning: Any = None,
                 flush_seconds: float = 0.25) -> None:
        endings.script_goes_on()
        settings = get_settings()
        self.api = (api or os.environ.get("PRUNESCOPE_API_URL") or settings.api_url).rstrip("/")
        _check_api_url(self.api)
        token = token or os.environ.get("PRUNESCOPE_API_TOKEN") or settings.api_token
        if config is not None and not isinstance(config, dict):  # "dictionary update sequence element #0" before
            raise TypeError("prunescope.init: config must be a dict of the run's settings, not "
                            f"{type(config).__name__}")
        lease = secrets.token_urlsafe(32)
        pruning_block = parse_pruning(pruning) if pruning is not None else None
        # Validated here, so a bad name, config or pruning block fails at the call with the API's located error.
        body = TrackedRunCreate.model_validate({
            "name": name, "tags": list(tags or []), "config": _plain(dict(config or {})), "lease": lease,
            "host": f"{socket.gethostname()}:{os.getpid()}"[:200], "epochs": epochs,
            "pruning": pruning_block.model_dump(mode="json") if pruning_block else None})
        wire = body.model_dump(mode="json", exclude_none=True)
        root = Path(dir) if dir is not None else settings.home / "spool"
        # When it started, for an upload by `prunescope sync` (the API stamps a run it sees created with its clock).
        meta = {**wire, "api": self.api, "run_id": None, "started_at": _now()}
        self.spool = spooling.Spool(root / spooling.run_dir_name(body.name, lease), meta)
        transport = None if offline else Transport(self.api, token, lease)
        run_id = None
        if transport is not None:
            try:
                run_id = int(transport.create(wire)["id"])
                meta["run_id"] = run_id
            except ApiUnreachable:
                pass  # records are spooled; the sender keeps trying to reach the API
            except TrackingError:
                transport.close()
                raise
        self.name, self.config = body.name, body.config
        self._sender = Sender(transport, self.spool, run_id, flush_seconds=flush_seconds)
        self._pruner: Any = None
        self._epoch = 0
        self._finished = False
        self._not_finite: set[str] = set()  # names a NaN/inf was logged under (warned once each)
        self._pid = os.getpid()  # its sender thread lives in this process only (a fork copies no threads)
        _open_runs.add(self)
        _finish_at_child_exit()
        endings.install(lambda: any(run._pid == os.getpid() for run in list(_open_runs)))

    @property
    def id(self) -> int | None:
        """The run's id on the server (None while it has only been spooled)."""
        return self._sender.run_id

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def offline(self) -> bool:
        return not self._sender.online

    # ----- recording ------------------------------------------------------------------------------------------
    def watch(self, pruner: Any) -> None:
        """From now on `log(epoch=...)` also records the pruner's per-layer stats and mask snapshots."""
        if not callable(getattr(pruner, "epoch_stats", None)):
            raise TypeError(f"run.watch needs a prunescope.Pruner, not {type(pruner).__name__}")
        setup: dict[str, Any] = {"pruning": parse_pruning(pruner.config).model_dump(mode="json")}
        epochs = getattr(pruner, "epochs", None)
        if isinstance(epochs, int) and epochs > 0:
            setup["epochs_total"] = epochs
        self._pruner = pruner
        self._sender.put("setup", setup)

    def log(self, epoch: int | None = None, step: int | None = None, **scalars: Any) -> None:
        """`log(epoch=e, **scalars)` records epoch e; `log(step=s, **scalars)` a point inside the current epoch.

        Record fields (train_loss, test_acc, lr, ...) go to their columns, other scalars are kept as well.
        Raises `RunCancelled` once the run was cancelled from the dashboard."""
        self._check()
        endings.script_goes_on()
        for label, number in (("epoch", epoch), ("step", step)):
            # `epoch=True` was epoch 1 and `epoch=2.5` refused only later: a whole number (Python or numpy) or nothing.
            if number is not None and (isinstance(number, bool) or not isinstance(number, numbers.Integral)):
                raise TypeError(f"run.log: {label} must be a whole number, got {number!r}")
        values = {name: _scalar(name, value) for name, value in scalars.items()}
        self._warn_not_finite(scalars, values, f"epoch {epoch}" if step is None else f"step {step}")
        if step is not None:
            point = TrackedPoint.model_validate({"step": step, "epoch": epoch or self._epoch + 1, "values": values})
            self._sender.put("point", point.model_dump())
            return
        if epoch is None:
            raise TypeError("run.log needs epoch= (an epoch record) or step= (a point inside an epoch)")
        known = {k: v for k, v in values.items() if k in RECORD_FIELDS}
        extra = {k: v for k, v in values.items() if k not in RECORD_FIELDS}
        # Checked at the call as the API will check it (names, counts, bounds): a value the API refuses would fail
        # the whole flush later, the epochs before it too. Before the pruner's churn counters are read (reading
        # resets them), so a refused log (epoch=0, accuracy in percent) leaves them for the corrected one.
        TrackedEpoch.model_validate({"epoch": epoch, **known, "extra": extra})
        masks = None
        layers: list[dict[str, Any]] = []
        if self._pruner is not None:
            stats, masks = self._pruner.epoch_stats()
            layers = [s.model_dump() for s in stats]
            self._fill_from_masks(known, masks)
        record = EpochMetrics.model_validate({"epoch": epoch, **known}).model_dump()
        record["layers"] = layers
        if extra:
            record["extra"] = extra
        self._epoch = max(self._epoch, epoch)
        self._sender.put("epoch", (record, masks))

    def _warn_not_finite(self, scalars: dict[str, Any], values: dict[str, Any], where: str) -> None:
        """A NaN/inf is stored as null (JSON has neither): said once per name, at the first, so that a diverged loss
        does not pass unnoticed as a run whose losses are simply missing. The script goes on (its choice)."""
        for name, value in values.items():
            if value is None and scalars[name] is not None and name not in self._not_finite:
                self._not_finite.add(name)
                shown = float(scalars[name].item() if hasattr(scalars[name], "item") else scalars[name])
                warnings.warn(f"run.log: {name} is {shown} at {where}, not a finite number: it is stored as null (no "
                              f"value), and so are its later non-finite values, without another warning",
                              RuntimeWarning, stacklevel=3)

    def _fill_from_masks(self, known: dict[str, Any], masks: dict[str, np.ndarray]) -> None:
        total = sum(int(m.size) for m in masks.values())
        nonzero = sum(int(np.count_nonzero(m)) for m in masks.values())
        known.setdefault("total", total)
        known.setdefault("nonzero", nonzero)
        known.setdefault("sparsity", 1 - nonzero / total if total else 0.0)
        target_at, step = getattr(self._pruner, "target_at", None), getattr(self._pruner, "step", None)
        if callable(target_at) and isinstance(step, int):
            known.setdefault("target_sparsity", target_at(step))

    def _check(self) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(f"this run belongs to process {self._pid}, not to this child process {os.getpid()} (its "
                               "records would go nowhere): start a run in the child with prunescope.init()")
        if self._finished:
            raise RuntimeError("this run has finished; start another with prunescope.init()")
        if self._sender.fatal is not None:
            raise self._sender.fatal
        if self._sender.cancelled.is_set():
            raise RunCancelled(f"run {self.id} was cancelled from the dashboard")

    # ----- ending ---------------------------------------------------------------------------------------------
    def finish(self, status: str = "completed", error: str | None = None, summary: dict[str, Any] | None = None,
               timeout: float | None = 60.0) -> None:
        """End the run: everything logged is sent (or spooled, fsync'd) before this returns."""
        if self._finished:
            return
        if status == "completed" and self._sender.cancelled.is_set():
            status = "cancelled"
        if status not in ("completed", "failed", "cancelled"):
            raise ValueError(f"status must be completed, failed or cancelled, not {status!r}")
        with endings.finishing():  # before the run counts as finished: a SIGTERM from here on waits for it
            self._finished = True
            body: dict[str, Any] = {"status": status, "finished_at": _now()}  # sent when spooled (see Sender)
            if error:
                body["error"] = error[-20000:].replace("\x00", "")
            if summary:
                body["summary"] = summary
            self._sender.close(body, timeout)
            if self._sender.transport is not None:
                self._sender.transport.close()
            _open_runs.discard(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.finish("completed")  # sys.exit(0) is a script ending well
        elif isinstance(exc, RunCancelled | KeyboardInterrupt):
            self.finish("cancelled")  # the dashboard's cancel, or Ctrl-C: stopped on purpose (re-raised all the same)
        else:
            text = "".join(traceback.format_exception(kind, exc, tb)[-12:])
            self.finish("failed", error=f"{type(exc).__name__}: {exc}\n{text}")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _check_api_url(url: str) -> None:
    """A URL httpx cannot send to ("127.0.0.1:8000", "htp://…") made the run go offline without a word, spooled
    for an API that can never be reached."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"prunescope.init: api {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"prunescope.init: api {url!r} is not an http(s) URL with a host, such as "
                         "http://127.0.0.1:8000")


def init(name: str = "untitled", config: dict[str, Any] | None = None, tags: list[str] | None = None,
         api: str | None = None, token: str | None = None, *, dir: str | Path | None = None, offline: bool = False,
         epochs: int | None = None, pruning: dict[str, Any] | PruningConfig | None = None) -> Run:
    """Start a tracked run. `api`/`token` default to PRUNESCOPE_API_URL / PRUNESCOPE_API_TOKEN; when the API
    cannot be reached (or `offline=True`) records go to a spool under `dir` (default PRUNESCOPE_HOME/spool)."""
    return Run(name, config, tags, api, token, dir=dir, offline=offline, epochs=epochs, pruning=pruning)


def _fail_open_runs(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    # An uncaught exception ends the script: its runs end failed with the reason, then Python reports it.
    for run in list(_open_runs):
        if run._pid == os.getpid():
            run.__exit__(kind, exc, tb)
    _previous_hook(kind, exc, tb)


_previous_hook = sys.excepthook
sys.excepthook = _fail_open_runs


@atexit.register
def _finish_open_runs() -> None:
    # A script that ended without finish(): what it logged is still sent or spooled and fsync'd. Only this process's
    # runs: a forked child holds copies of its parent's, whose sender threads it does not have. How they end:
    # `endings.exit_verdict` (failed after SIGTERM or sys.exit with a status other than 0; completed otherwise).
    status, error = endings.exit_verdict()
    for run in list(_open_runs):
        if run._pid == os.getpid():
            run.finish(status, error=error)


_finalizer_pid: int | None = None


def _finish_at_child_exit() -> None:
    """A multiprocessing child ends without running atexit hooks, and starts by clearing the exit finalizers it
    inherited or imported: registered when the process's first run starts, multiprocessing's own exit runs it."""
    global _finalizer_pid
    if _finalizer_pid != os.getpid():
        _finalizer_pid = os.getpid()
        multiprocessing.util.Finalize(None, _finish_open_runs, exitpriority=0)
