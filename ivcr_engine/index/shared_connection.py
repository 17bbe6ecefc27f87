"""An index store's SQLite connection is shared by every thread of a server (turns on many threads,
a refresh on another): Python's sqlite3 module does not make that safe by itself. A statement
stepped from two threads at once, or one thread's BEGIN inside another's read transaction, failed
as "no more rows available" or "cannot start a transaction within a transaction"
(tests/index/test_concurrent_reads.py drove 8 searching threads beside a refreshing one). So
every read a search or a refresh makes on the store runs under the store's lock, its rows
fetched before the lock is let go, and ``snapshot()``'s read transaction holds it throughout.
The lock is reentrant (a snapshot reads the metadata through the same methods) and held only for
a statement or a transaction: milliseconds at most, where SQLite serialises one connection's
statements anyway."""
from __future__ import annotations

import functools


def serialised(method):
    """Run ``method`` under its store's ``_lock`` (IndexStore makes it, an RLock)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return run
