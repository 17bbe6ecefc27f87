"""The engine's error kinds: what a face (CLI, HTTP, a host program) needs to tell a caller's
mistake from the engine's own fault. Each kind subclasses the built-in exception it used to be,
so ``except ValueError`` still catches an invalid argument.

- ``InvalidArgument`` / ``WrongType``: the caller asked for something impossible (an empty query,
  k < 1, a ref past the index, a float where an integer is meant). HTTP 400.
- ``NotFound``: a named thing does not exist (a session, a video, an index folder). HTTP 404.
- ``IndexDamaged``: the index's files disagree with its committed metadata; the message says how
  to repair it. HTTP 503: nothing the client can change, and not a crash.
- ``EngineFault``: the engine cannot do what a well-formed request asks (an index without the
  channel a turn needs). HTTP 500 with a request id.
Anything else that escapes is a bug, and a face reports it as internal (HTTP 500 with a request id).
"""
from __future__ import annotations


class IvcrError(Exception):
    """Base of the engine's typed errors; ``kind`` names it in error bodies."""
    kind = "internal"


class InvalidArgument(IvcrError, ValueError):
    kind = "invalid_request"


class WrongType(IvcrError, TypeError):
    kind = "invalid_request"


class NotFound(IvcrError, LookupError):
    kind = "not_found"

    def __str__(self) -> str:  # LookupError's KeyError cousins quote their argument; this one reads plainly
        return str(self.args[0]) if self.args else "not found"


class MissingFile(NotFound, FileNotFoundError):
    """A file or folder the engine was pointed at is not there (an index, a shard, a model)."""


class IndexDamaged(IvcrError, RuntimeError):
    """An index whose files disagree with its committed metadata (the message says which file,
    what is wrong and how to repair it)."""
    kind = "index_damaged"


class EngineFault(IvcrError, RuntimeError):
    kind = "internal"


# HTTP status of each kind, mapped once (server/errors.py)
HTTP_STATUS = {"invalid_request": 400, "not_found": 404, "index_damaged": 503, "internal": 500}
