"""Errors of the persistence layer, placed in veritee's three-way tree (STYLE.md §7).

* :class:`StoreError` (could not decide — the environment's fault):

  * :class:`StoreUnavailableError` — the database cannot be reached, is locked past the busy
    timeout, ran out of connections, or failed a statement. Retry later; HTTP 503.
  * :class:`StoreIntegrityError` — a sealed row does not authenticate under the key
    encryption key (tampered, swapped between rows, or sealed under a KEK this store was not
    given). Never retry; alert an operator; HTTP 500.

* :class:`SessionError` (rejected — the requester's fault; the broker answers 401 as KBS does):

  * :class:`SessionUnknownError` — no such session, or it expired.
  * :class:`SessionStateError` — the session is not in the state the step needs (attested
    already, with another token).

* :class:`StoreMisuseError` (misuse — a bug or bad configuration):

  * :class:`StoreConfigError` — bad URL, bad KEK, schema missing or newer than this code.
  * :class:`StoreConflictError` — a unique key is taken (a session id reused).
  * :class:`ResourcePathError` — not a ``repo/type/tag`` path (the broker answers 404).
  * :class:`InvalidRecordError` — a value the store refuses: naive datetime, unknown kind,
    empty name, reference values that are not a list.

Messages never carry secrets: no plaintext, no tokens, no session ids, no connection
passwords, no SQL parameters (the engine is created with ``hide_parameters=True``).
"""

from __future__ import annotations

from veritee.errors import EvidenceError, MisuseError, UndecidedError


class StoreError(UndecidedError):
    """The store could not do what was asked; the request itself may be fine."""


class StoreUnavailableError(StoreError):
    """The database is unreachable, busy past the timeout, or failed the statement."""


class StoreIntegrityError(StoreError):
    """A sealed value does not authenticate: tampered, swapped, or sealed under another KEK."""


class SessionError(EvidenceError):
    """A KBS protocol step refers to a session it may not use (the requester's fault)."""


class SessionUnknownError(SessionError):
    """No such session, or it has expired (indistinguishable once purged)."""


class SessionStateError(SessionError):
    """The session is not in the state this step requires."""


class StoreMisuseError(MisuseError):
    """The store was called wrongly or configured inconsistently."""


class StoreConfigError(StoreMisuseError):
    """Bad database URL, bad KEK, or a schema this code cannot use."""


class StoreConflictError(StoreMisuseError):
    """A row with the same unique key exists already."""


class ResourcePathError(StoreMisuseError):
    """A resource path is not three non-empty ``[A-Za-z0-9._-]`` segments."""


class InvalidRecordError(StoreMisuseError):
    """A value the store refuses to write (naive datetime, unknown kind, bad shape)."""


__all__ = [
    "InvalidRecordError",
    "ResourcePathError",
    "SessionError",
    "SessionStateError",
    "SessionUnknownError",
    "StoreConfigError",
    "StoreConflictError",
    "StoreError",
    "StoreIntegrityError",
    "StoreMisuseError",
    "StoreUnavailableError",
]
