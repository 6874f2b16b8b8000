"""Token buckets per key (a client address, say), bounded in memory and driven by the clock
they are given. Standard library only.

A bucket holds up to ``burst`` tokens and refills at ``per_minute`` tokens a minute; taking a
token from an empty bucket says how long until the next one. At most ``max_keys`` buckets are
kept (the least recently used go first), so a flood of distinct keys cannot grow memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    per_minute: float
    """Refill rate; 0 or less: unlimited (every take succeeds)."""
    burst: float
    max_keys: int = 65536
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict,
                                                            repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def unlimited(self) -> bool:
        return self.per_minute <= 0

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when granted, else the seconds until one is."""
        if self.unlimited:
            return 0.0
        now = self.clock()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * rate)
            granted = tokens >= 1.0
            if granted:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return 0.0 if granted else (1.0 - tokens) / rate


__all__ = ["TokenBuckets"]
