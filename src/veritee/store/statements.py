"""Every statement the store runs, built once per store and reused.

SQLAlchemy caches the compiled form of each statement object, so a hot call costs a cache
look-up, the driver call and the commit. Upserts use ``INSERT ... ON CONFLICT`` and results
use ``RETURNING``, which both PostgreSQL and SQLite (3.35+) understand, so every protocol
step is one statement and atomic across processes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Delete,
    Insert,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    Update,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from veritee.store.schema import (
    UTCDateTime,
    audit_log,
    policies,
    policy_heads,
    reference_value_changes,
    reference_value_heads,
    reference_values,
    resources,
    sessions,
    settings,
)


def _now(name: str = "p_now") -> Any:
    return bindparam(name, type_=UTCDateTime())


def _limit() -> Any:
    return bindparam("p_limit", type_=Integer())


def _after(name: str = "p_after") -> Any:
    """A keyset cursor: the last key of the previous page (``""`` for the first page, which
    sorts before every non-empty key on both backends)."""
    return bindparam(name, type_=String())


class Statements:
    """The prepared statements of one dialect."""

    def __init__(self, *, postgresql: bool) -> None:
        upsert = pg_insert if postgresql else sqlite_insert
        self._sessions()
        self._resources(upsert)
        self._heads(upsert)
        self._versioned()
        self._settings(upsert)
        self.audit_insert: Insert = insert(audit_log).returning(audit_log.c.id)
        self.audit_insert_many: Insert = insert(audit_log)
        self.audit_at: Select[Any] = select(audit_log.c.at).where(
            audit_log.c.id == bindparam("p_id", type_=Integer()))

    # --- sessions ---------------------------------------------------------------------------

    def _sessions(self) -> None:
        sid = sessions.c.id == bindparam("p_id", type_=String())
        live = sessions.c.expires_at > _now()
        self.session_insert: Insert = insert(sessions)
        self.session_get: Select[Any] = select(sessions).where(sid, live)
        self.session_attest: Update = (
            update(sessions)
            .where(sid, live, sessions.c.state == "authed")
            .values(
                state="attested",
                token=bindparam("p_token", type_=Text()),
                expires_at=_now("p_expires"),
            )
            .returning(*sessions.c)
        )
        self.nonce_consume: Update = (
            update(sessions)
            .where(
                sid,
                live,
                sessions.c.state == "authed",
                sessions.c.nonce_used == false(),
                sessions.c.nonce == bindparam("p_nonce", type_=Text()),
            )
            .values(nonce_used=true())
        )
        self.challenge_attest: Update = (
            update(sessions)
            .where(
                sid,
                live,
                sessions.c.state == "authed",
                sessions.c.nonce_used == false(),
                sessions.c.nonce == bindparam("p_nonce", type_=Text()),
            )
            .values(
                state="attested",
                nonce_used=true(),
                token=bindparam("p_token", type_=Text()),
                expires_at=_now("p_expires"),
            )
        )
        self.session_delete: Delete = delete(sessions).where(sid)
        # One bounded batch, oldest first along the sessions_expires_at index.
        expired = (select(sessions.c.id).where(sessions.c.expires_at <= _now())
                   .order_by(sessions.c.expires_at)
                   .limit(bindparam("p_batch", type_=Integer())))
        self.session_purge: Delete = delete(sessions).where(
            sessions.c.id.in_(expired.scalar_subquery()))

    # --- resources --------------------------------------------------------------------------

    def _resources(self, upsert: Any) -> None:
        path = resources.c.path == bindparam("p_path", type_=String())
        ins = upsert(resources)
        self.resource_put: Insert = ins.on_conflict_do_update(
            index_elements=[resources.c.path],
            set_={
                "version": resources.c.version + 1,
                "key_id": ins.excluded.key_id,
                "nonce": ins.excluded.nonce,
                "ciphertext": ins.excluded.ciphertext,
                "updated_at": ins.excluded.updated_at,
            },
        ).returning(resources.c.version)
        self.resource_get, self.resource_all, self.resource_reseal = _sealed(
            resources, resources.c.path, path)
        self.resource_delete: Delete = delete(resources).where(path)
        self.resource_page: Select[Any] = (
            select(resources.c.path).where(resources.c.path > _after())
            .order_by(resources.c.path).limit(_limit()))

    # --- versioned policies and reference values ----------------------------------------------

    def _heads(self, upsert: Any) -> None:
        """``latest`` counters: the upsert locks the head row, so concurrent puts of one name
        get distinct versions on PostgreSQL too."""
        ins = upsert(policy_heads).values(latest=literal(1, Integer()))
        self.policy_bump: Insert = ins.on_conflict_do_update(
            index_elements=[policy_heads.c.kind, policy_heads.c.policy_id],
            set_={"latest": policy_heads.c.latest + 1},
        ).returning(policy_heads.c.latest)
        ins = upsert(reference_value_heads).values(latest=literal(1, Integer()))
        self.rv_bump: Insert = ins.on_conflict_do_update(
            index_elements=[reference_value_heads.c.name],
            set_={"latest": reference_value_heads.c.latest + 1},
        ).returning(reference_value_heads.c.latest)

    def _versioned(self) -> None:
        kind = policies.c.kind == bindparam("p_kind", type_=String())
        pid = policies.c.policy_id == bindparam("p_policy_id", type_=String())
        self.policy_insert: Insert = insert(policies)
        latest_policies = select(policies).join(
            policy_heads,
            (policy_heads.c.kind == policies.c.kind)
            & (policy_heads.c.policy_id == policies.c.policy_id)
            & (policy_heads.c.latest == policies.c.version),
        )
        self.policy_latest: Select[Any] = latest_policies.where(kind, pid)
        self.policy_version: Select[Any] = select(policies).where(
            kind, pid, policies.c.version == bindparam("p_version", type_=Integer())
        )
        # Pages walk the head rows in key order (their primary key) and look up each latest
        # version: a page costs its size, whatever the number of policies.
        self.policy_page_all: Select[Any] = (
            latest_policies
            .where(tuple_(policy_heads.c.kind, policy_heads.c.policy_id)
                   > tuple_(_after("p_after_kind"), _after()))
            .order_by(policy_heads.c.kind, policy_heads.c.policy_id).limit(_limit()))
        self.policy_page_kind: Select[Any] = (
            latest_policies
            .where(policy_heads.c.kind == bindparam("p_kind", type_=String()),
                   policy_heads.c.policy_id > _after())
            .order_by(policy_heads.c.policy_id).limit(_limit()))

        self._reference_values()

    def _reference_values(self) -> None:
        name = reference_values.c.name == bindparam("p_name", type_=String())
        head = reference_value_heads.c.name
        live = or_(reference_values.c.expires.is_(None), reference_values.c.expires > _now())
        self.rv_insert: Insert = insert(reference_values)
        latest_rvs = select(reference_values).join(
            reference_value_heads,
            (head == reference_values.c.name)
            & (reference_value_heads.c.latest == reference_values.c.version),
        )
        self.rv_list_all: Select[Any] = latest_rvs.order_by(head)
        self.rv_list_live: Select[Any] = self.rv_list_all.where(live)
        page = latest_rvs.where(head > _after()).order_by(head).limit(_limit())
        self.rv_page_all: Select[Any] = page
        self.rv_page_live: Select[Any] = page.where(live)
        one = latest_rvs.where(head == bindparam("p_name", type_=String()))
        self.rv_get_all: Select[Any] = one
        self.rv_get_live: Select[Any] = one.where(live)
        self.rv_for_live: Select[Any] = latest_rvs.where(
            head.in_(bindparam("p_names", expanding=True)), live)
        self.rv_delete: Delete = delete(reference_values).where(name)
        changes = reference_value_changes.c
        self.rv_change_insert: Insert = insert(reference_value_changes)
        self.rv_change_latest: Select[Any] = select(func.coalesce(func.max(changes.seq), 0))
        self.rv_changed_since: Select[Any] = (
            select(changes.name).distinct()
            .where(changes.seq > bindparam("p_after", type_=Integer()),
                   changes.seq <= bindparam("p_latest", type_=Integer()))
            .order_by(changes.name))

    # --- settings ---------------------------------------------------------------------------

    def _settings(self, upsert: Any) -> None:
        key = settings.c.key == bindparam("p_key", type_=String())
        ins = upsert(settings)
        self.setting_put_if_absent: Insert = ins.on_conflict_do_nothing(
            index_elements=[settings.c.key]
        ).returning(settings.c.key)
        self.setting_put: Insert = ins.on_conflict_do_update(
            index_elements=[settings.c.key],
            set_={
                "key_id": ins.excluded.key_id,
                "nonce": ins.excluded.nonce,
                "ciphertext": ins.excluded.ciphertext,
                "updated_at": ins.excluded.updated_at,
            },
        )
        self.setting_get, self.setting_all, self.setting_reseal = _sealed(
            settings, settings.c.key, key)
        self.setting_delete: Delete = delete(settings).where(key)


__all__ = ["Statements"]


def _sealed(table: Any, name: Any, match: Any) -> tuple[Select[Any], Select[Any], Update]:
    """Statements every sealed table (resources, settings) shares: read one sealed value,
    read all of them for a KEK rotation (locked), and write one back resealed."""
    get = select(table.c.key_id, table.c.nonce, table.c.ciphertext).where(match)
    every = (select(name, table.c.key_id, table.c.nonce, table.c.ciphertext)
             .order_by(name).with_for_update())
    reseal = update(table).where(match).values(
        key_id=bindparam("p_key_id", type_=String()),
        nonce=bindparam("p_nonce", type_=LargeBinary()),
        ciphertext=bindparam("p_ciphertext", type_=LargeBinary()),
    )
    return get, every, reseal

