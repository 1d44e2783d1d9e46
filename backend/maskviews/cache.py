"""A bounded LRU of decoded masks, one per database: a grid read replays up to 16 frames only once."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

DEFAULT_MAX_BYTES = 128 * 1024 * 1024


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


_caches: weakref.WeakKeyDictionary[Engine, MaskCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def cache_for(session: Session) -> MaskCache:
    """The cache of the database this session reads (ids are only unique within one database)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = MaskCache()
        return cache
