"""A bounded LRU of decoded masks, one per database: a grid read replays up to 16 frames only once."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prunescope import maskcodec

DEFAULT_MAX_BYTES = 128 * 1024 * 1024
T = TypeVar("T")


class MaskCache:
    """Decoded masks by key, least recently used dropped first once their bytes pass `max_bytes`.

    Keys name the exact snapshot rows a mask was decoded from; a re-reported epoch gets new rows (new ids),
    so a replaced snapshot can never be served from here.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            mask = self._items.get(key)
            if mask is not None:
                self._items.move_to_end(key)
            return mask

    def put(self, key: Hashable, mask: np.ndarray) -> None:
        if mask.nbytes > self.max_bytes:
            return  # one huge mask must not flush everything else
        mask.setflags(write=False)  # shared between requests: nobody may change it in place
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._items[key] = mask
            self.bytes += mask.nbytes
            while self.bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._items)


Identity = tuple[int, int, int]  # epoch, byte length and crc32 of the snapshot a count was checked from
DEFAULT_MAX_REPORTED = 100_000


class ReportedMasks:
    """What the newest mask each (run, lease, layer) reported keeps (`maskcodec.Kept`: shape and count), with the
    identity of the snapshot it was checked from, so the next report's delta is checked against it without
    replaying the stored chain. One entry per layer of a reporting run (a new one replaces the last), a few
    hundred bytes each; the least recently reported go first past `max_items`."""

    def __init__(self, max_items: int = DEFAULT_MAX_REPORTED) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[int, str, str], tuple[Identity, maskcodec.Kept]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: int, lease: str, layer: str, identity: Identity) -> maskcodec.Kept | None:
        with self._lock:
            item = self._items.get((run_id, lease, layer))
            return item[1] if item is not None and item[0] == identity else None

    def put(self, run_id: int, lease: str, layer: str, identity: Identity, kept: maskcodec.Kept) -> None:
        key = (run_id, lease, layer)
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (identity, kept)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def forget(self, run_id: int) -> None:
        """A run's attempt ended (its lease with it): its counts will not be asked for again."""
        with self._lock:
            for key in [key for key in self._items if key[0] == run_id]:
                del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


_caches: weakref.WeakKeyDictionary[Engine, MaskCache] = weakref.WeakKeyDictionary()
_reported: weakref.WeakKeyDictionary[Engine, ReportedMasks] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _for_engine(registry: weakref.WeakKeyDictionary[Engine, T], session: Session, make: Callable[[], T]) -> T:
    """The registry's entry for the database this session uses, made on first use (ids are per database)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _caches_lock:
        found = registry.get(engine)
        if found is None:
            found = registry[engine] = make()
        return found


def cache_for(session: Session) -> MaskCache:
    """The cache of the database this session reads (ids are only unique within one database)."""
    return _for_engine(_caches, session, MaskCache)


def reported_for(session: Session) -> ReportedMasks:
    """The reported mask counts of the database this session writes (run ids are only unique within one database)."""
    return _for_engine(_reported, session, ReportedMasks)
