"""The change log in the database: its schema, installing it, and reading it in order.

Everything here is blocking psycopg calls on a connection in autocommit mode, run by the
callers in a worker thread. The objects, all in the schema ``reactor``:

* ``reactor.row_changes``: one row per changed row of an installed table, written by the
  trigger in the transaction that made the change: ``id`` (an identity), ``xid`` (the
  writing transaction, ``pg_current_xact_id()``), ``changed_at``, ``table_name``, ``op``,
  ``key`` (the primary key's values, a JSON array in key order), ``new`` and ``old`` (the
  row as ``to_jsonb()`` makes it, or null);
* ``reactor.row_change_tables``: the installed tables and their key columns;
* ``reactor.row_change_cursors``: one reading position per (table, consumer group);
* ``reactor.capture_row_change()``: the trigger function, ``SECURITY DEFINER`` so that
  the app's writers need no rights on the log; it also sends ``NOTIFY
  reactor_row_changes, '<table>'`` (delivered at commit, once per transaction and table).

**The reading order.** Identities are handed out when a row is written, not when its
transaction commits: a transaction that commits later may hold a lower ``id`` than one
already read, so a cursor "the last id read" would skip it for ever. The reader therefore
goes by *snapshots* (the scheme of PgQ): the cursor holds ``done``, a snapshot such that
every change whose transaction is visible in it was delivered. A round takes the current
snapshot ``upto`` and delivers the changes whose transaction is visible in ``upto`` but not
in ``done``, in ``id`` order; those transactions have all ended, so the set is final, and
it is read in pages (``after_id`` remembers where a page ended). When the round is done,
``done`` becomes ``upto``. Nothing is skipped (a transaction still running when ``upto``
was taken is not visible in it, so it comes in a later round), nothing is delivered twice
by one reader, and two changes of one row come in the order they were made: the second
writer waited for the first one's commit, so its ``id`` is higher, and the first one is
visible in every snapshot the second one is.

Only ended transactions are trimmed: the rows whose ``xid`` is below the oldest
``xmin`` of the table's cursors, which every consumer group has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, get_args

from reactor import ReactorError

from ._connection import psycopg_module

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "LOCK_CLASS",
    "OPS",
    "WAKE_CHANNEL",
    "Change",
    "Cursor",
    "Op",
    "Page",
    "Table",
    "TableNotInstalledError",
    "commit",
    "install_tables",
    "open_cursor",
    "read_page",
    "resolve_table",
    "trim",
    "try_lock",
    "uninstall_tables",
]

#: What happened to a row.
Op = Literal["insert", "update", "delete"]
#: The operations a change can be, as the log and the events name them.
OPS: Final[tuple[Op, ...]] = get_args(Op)
#: The channel of the wake-ups, with the table's name as payload.
WAKE_CHANNEL: Final = "reactor_row_changes"
#: The first key of the advisory locks of the readers (the second is the cursor's id).
LOCK_CLASS: Final = 0x52435452
#: The snapshot in which no transaction is visible: a new consumer group starts there.
_NOTHING: Final = "1:1:"
_TRIGGER: Final = "reactor_row_change"
# Serialises installs and uninstalls (a transaction-level advisory lock).
_INSTALL_LOCK: Final = (LOCK_CLASS, 0)

_SCHEMA: Final = """
CREATE SCHEMA IF NOT EXISTS reactor;
CREATE TABLE IF NOT EXISTS reactor.row_changes (
    id bigint GENERATED ALWAYS AS IDENTITY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    table_name text NOT NULL,
    op text NOT NULL,
    key jsonb NOT NULL,
    new jsonb,
    old jsonb,
    PRIMARY KEY (table_name, id)
);
CREATE INDEX IF NOT EXISTS row_changes_by_xid ON reactor.row_changes (table_name, xid);
CREATE TABLE IF NOT EXISTS reactor.row_change_tables (
    table_name text PRIMARY KEY,
    key_columns text[] NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS reactor.row_change_cursors (
    id integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    table_name text NOT NULL REFERENCES reactor.row_change_tables ON DELETE CASCADE,
    consumer text NOT NULL,
    done pg_snapshot NOT NULL,
    upto pg_snapshot,
    after_id bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, consumer)
);
CREATE OR REPLACE FUNCTION reactor.capture_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_row jsonb;
    old_row jsonb;
    key_values jsonb;
BEGIN
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
    -- TG_ARGV counts from 0: the table's name, then its key columns in key order.
    SELECT jsonb_agg(coalesce(new_row, old_row) -> c ORDER BY n) INTO key_values
        FROM unnest(TG_ARGV[1:TG_NARGS - 1]) WITH ORDINALITY AS k(c, n);
    INSERT INTO reactor.row_changes (table_name, op, key, new, old)
        VALUES (TG_ARGV[0], lower(TG_OP), key_values, new_row, old_row);
    PERFORM pg_notify('reactor_row_changes', TG_ARGV[0]);
    RETURN NULL;
END
$$;
"""


class TableNotInstalledError(ReactorError, LookupError):
    """A table whose changes are asked for has no change capture installed, or does not exist.

    Install it with ``reactor db install --dsn ... <table>`` or
    :func:`reactor.sources.postgres.install`.
    """


class Table(NamedTuple):
    """An installed table."""

    #: ``schema.table``, each part quoted as SQL needs it (``public."Order Lines"``)
    name: str
    #: the primary key's columns, in key order
    key_columns: tuple[str, ...]


class Cursor(NamedTuple):
    """A consumer group's reading position (see the module documentation)."""

    id: int
    done: str
    upto: str | None
    after_id: int


class Change(NamedTuple):
    """One row of the change log."""

    id: int
    xid: str
    changed_at: datetime
    op: str
    key: list[Any]
    new: dict[str, Any] | None
    old: dict[str, Any] | None


class Page(NamedTuple):
    """The changes of one read, and where the cursor goes once they are published."""

    changes: list[Change]
    cursor: Cursor
    #: the cursor moved (a round ended or a page was read): it must be committed
    moved: bool


def _sql() -> Any:
    return psycopg_module().sql


def _locate(conn: psycopg.Connection[Any], table: str) -> tuple[int, str, str] | None:
    """The oid, canonical name and kind of *table* as SQL would resolve it, or None."""
    row = conn.execute(
        """SELECT c.oid::int, format('%%I.%%I', n.nspname, c.relname), c.relkind::text
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.oid = to_regclass(%s)""",
        (table,),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def _registered(conn: psycopg.Connection[Any], table: str) -> tuple[str, list[str]] | None:
    """The registry's entry of *table* (which may no longer exist), resolved as SQL would:
    a qualified name directly, an unqualified one along the ``search_path``."""
    row = conn.execute(
        """SELECT r.table_name, r.key_columns
           FROM (SELECT parse_ident(%s) AS p) i
           LEFT JOIN LATERAL unnest(current_schemas(false)) WITH ORDINALITY AS s(name, n)
               ON cardinality(i.p) = 1
           JOIN reactor.row_change_tables r ON r.table_name = CASE cardinality(i.p)
               WHEN 2 THEN format('%%I.%%I', i.p[1], i.p[2])
               ELSE format('%%I.%%I', s.name, i.p[1]) END
           ORDER BY s.n NULLS FIRST
           LIMIT 1""",
        (table,),
    ).fetchone()
    return None if row is None else (row[0], list(row[1]))


def _installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('reactor.row_change_tables') IS NOT NULL").fetchone()
    return bool(row and row[0])


def resolve_table(conn: psycopg.Connection[Any], table: str) -> Table:
    """Find the installed table that *table* names (resolved as SQL resolves it).

    :raises TableNotInstalledError: the table does not exist, or has no change capture
    """
    hint = f"install it with: reactor db install --dsn ... {table}"
    found = _locate(conn, table)
    registered = (
        _registered(conn, table if found is None else found[1]) if _installed(conn) else None
    )
    if found is None and registered is None:
        raise TableNotInstalledError(f"table {table!r} does not exist")
    if registered is None or found is None or not _has_trigger(conn, found[0]):
        raise TableNotInstalledError(f"table {table!r} has no row-change capture; {hint}")
    return Table(registered[0], tuple(registered[1]))


def _has_trigger(conn: psycopg.Connection[Any], oid: int) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::oid AND tgname = %s",
        (oid, _TRIGGER),
    ).fetchone()
    return bool(row and row[0])


def _key_columns(conn: psycopg.Connection[Any], oid: int) -> list[str]:
    rows = conn.execute(
        """SELECT a.attname::text
           FROM pg_index i
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = %s::oid AND i.indisprimary
           ORDER BY k.n""",
        (oid,),
    ).fetchall()
    return [row[0] for row in rows]


def install_tables(conn: psycopg.Connection[Any], tables: Sequence[str]) -> list[tuple[str, bool]]:
    """Install change capture on *tables*, in one transaction (all or none).

    :return: each table's canonical name, and whether anything had to be done
    :raises TableNotInstalledError: a table does not exist
    :raises ValueError: a table has no primary key, or is not a table
    """
    sql = _sql()
    done: list[tuple[str, bool]] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _INSTALL_LOCK)
        conn.execute(_SCHEMA)
        for table in tables:
            found = _locate(conn, table)
            if found is None:
                raise TableNotInstalledError(f"table {table!r} does not exist")
            oid, name, kind = found
            if kind not in ("r", "p"):
                raise ValueError(f"{name} is not a table (row-change capture needs one)")
            columns = _key_columns(conn, oid)
            if not columns:
                raise ValueError(
                    f"table {name} has no primary key: add one (its values are the events' "
                    "subject and identify the changed row)"
                )
            arguments = [name, *columns]
            current = conn.execute(
                """SELECT t.tgargs FROM pg_trigger t WHERE t.tgrelid = %s::oid AND t.tgname = %s
                   AND t.tgfoid = 'reactor.capture_row_change()'::regprocedure""",
                (oid, _TRIGGER),
            ).fetchone()
            registered = conn.execute(
                "SELECT key_columns FROM reactor.row_change_tables WHERE table_name = %s", (name,)
            ).fetchone()
            expected = b"".join(a.encode() + b"\x00" for a in arguments)
            if current is not None and bytes(current[0]) == expected and registered is not None:
                if list(registered[0]) == columns:
                    done.append((name, False))
                    continue
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(_TRIGGER), sql.SQL(name)
                )
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
                    "EXECUTE FUNCTION reactor.capture_row_change({})"
                ).format(
                    sql.Identifier(_TRIGGER),
                    sql.SQL(name),
                    sql.SQL(", ").join(sql.Literal(a) for a in arguments),
                )
            )
            conn.execute(
                """INSERT INTO reactor.row_change_tables (table_name, key_columns)
                   VALUES (%s, %s)
                   ON CONFLICT (table_name) DO UPDATE SET key_columns = excluded.key_columns""",
                (name, columns),
            )
            done.append((name, True))
    return done


def uninstall_tables(
    conn: psycopg.Connection[Any], tables: Sequence[str]
) -> list[tuple[str, bool]]:
    """Remove change capture from *tables*, with their logged changes and cursors, in one
    transaction; the schema ``reactor`` goes with the last table.

    :return: each table's name, and whether anything had to be done
    """
    sql = _sql()
    done: list[tuple[str, bool]] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _INSTALL_LOCK)
        installed = _installed(conn)
        if installed:
            # All at once and first: taken one by one along the way (a row lock here, the
            # DROP's exclusive lock there), they deadlock with a reader's transaction,
            # which reads the log and then writes its cursor.
            conn.execute(
                """LOCK TABLE reactor.row_change_tables, reactor.row_changes,
                   reactor.row_change_cursors IN ACCESS EXCLUSIVE MODE"""
            )
        for table in tables:
            found = _locate(conn, table)
            name = table if found is None else found[1]
            if found is None and installed:  # dropped since: the registry knows its name
                entry = _registered(conn, table)
                name = name if entry is None else entry[0]
            changed = False
            if found is not None and _has_trigger(conn, found[0]):
                conn.execute(
                    sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(_TRIGGER), sql.SQL(name))
                )
                changed = True
            if installed:
                removed = conn.execute(
                    "DELETE FROM reactor.row_change_tables WHERE table_name = %s", (name,)
                ).rowcount
                conn.execute("DELETE FROM reactor.row_changes WHERE table_name = %s", (name,))
                changed = changed or removed > 0
            done.append((name, changed))
        if installed:
            left = conn.execute("SELECT count(*) FROM reactor.row_change_tables").fetchone()
            if left is not None and left[0] == 0:
                conn.execute(
                    """DROP TABLE reactor.row_change_cursors, reactor.row_change_tables,
                       reactor.row_changes"""
                )
                conn.execute("DROP FUNCTION reactor.capture_row_change()")
                empty = conn.execute(
                    """SELECT NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace =
                       'reactor'::regnamespace) AND NOT EXISTS (SELECT 1 FROM pg_proc WHERE
                       pronamespace = 'reactor'::regnamespace) AND NOT EXISTS (SELECT 1 FROM
                       pg_type WHERE typnamespace = 'reactor'::regnamespace)"""
                ).fetchone()
                if empty is not None and empty[0]:
                    conn.execute("DROP SCHEMA reactor")
    return done


def open_cursor(conn: psycopg.Connection[Any], table: str, consumer: str) -> Cursor:
    """Return the cursor of *consumer* on *table*, created at the start of the log if new."""
    conn.execute(
        """INSERT INTO reactor.row_change_cursors (table_name, consumer, done)
           VALUES (%s, %s, %s::pg_snapshot) ON CONFLICT DO NOTHING""",
        (table, consumer, _NOTHING),
    )
    return load_cursor(conn, table, consumer)


def load_cursor(conn: psycopg.Connection[Any], table: str, consumer: str) -> Cursor:
    """Return the cursor of *consumer* on *table* as stored.

    :raises TableNotInstalledError: it is gone (the table was uninstalled)
    """
    row = conn.execute(
        """SELECT id, done::text, upto::text, after_id FROM reactor.row_change_cursors
           WHERE table_name = %s AND consumer = %s""",
        (table, consumer),
    ).fetchone()
    if row is None:
        raise TableNotInstalledError(f"the row-change capture of {table} was uninstalled")
    return Cursor(row[0], row[1], row[2], row[3])


def try_lock(conn: psycopg.Connection[Any], cursor: Cursor) -> bool:
    """Try to become the reader of *cursor*: a session-level advisory lock on this connection."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, cursor.id)).fetchone()
    return bool(row and row[0])


# The first page of a round takes the snapshot and finds the round's changes through the
# xid index: the transactions that ended since the last round (few, usually all of them
# in this one page).
_READ_ROUND: Final = """
WITH s AS (SELECT pg_current_snapshot() AS upto)
SELECT s.upto::text, c.id, c.xid::text, c.changed_at, c.op, c.key, c.new, c.old
FROM s LEFT JOIN LATERAL (
    SELECT * FROM reactor.row_changes c
    WHERE c.table_name = %(table)s
      AND c.xid >= pg_snapshot_xmin(%(done)s::pg_snapshot)
      AND c.xid < pg_snapshot_xmax(s.upto)
      AND pg_visible_in_snapshot(c.xid, s.upto)
      AND NOT pg_visible_in_snapshot(c.xid, %(done)s::pg_snapshot)
      AND c.op = ANY(%(ops)s)
    ORDER BY c.id
    LIMIT %(limit)s
) c ON true
"""
# The next pages of a large round (a backlog) walk the (table, id) index in order from
# the last id read, so that each page costs its own rows, not the whole round again. The
# planner would often sort instead (a burst leaves the log's statistics behind), so the
# query runs with sorts and bitmap scans disabled for its transaction.
_ORDERED_WALK: Final = "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
_READ_MORE: Final = """
SELECT c.id, c.xid::text, c.changed_at, c.op, c.key, c.new, c.old
FROM reactor.row_changes c
WHERE c.table_name = %(table)s
  AND c.id > %(after)s
  AND pg_visible_in_snapshot(c.xid, %(upto)s::pg_snapshot)
  AND NOT pg_visible_in_snapshot(c.xid, %(done)s::pg_snapshot)
  AND c.op = ANY(%(ops)s)
ORDER BY c.id
LIMIT %(limit)s
"""


def read_page(
    conn: psycopg.Connection[Any], table: str, cursor: Cursor, ops: Sequence[str], limit: int
) -> Page:
    """Read the next changes after *cursor*, at most *limit* of them (see the module docs)."""
    parameters = {
        "table": table,
        "done": cursor.done,
        "upto": cursor.upto,
        "after": cursor.after_id,
        "ops": list(ops),
        "limit": limit,
    }
    if cursor.upto is None:
        rows = conn.execute(_READ_ROUND, parameters).fetchall()
        upto = rows[0][0]
        changes = [Change(*row[1:]) for row in rows if row[1] is not None]
    else:
        upto = cursor.upto
        with conn.transaction():
            conn.execute(_ORDERED_WALK)
            changes = [Change(*row) for row in conn.execute(_READ_MORE, parameters).fetchall()]
    if len(changes) < limit:  # the round is over: every change visible in upto is read
        moved = bool(changes) or cursor.upto is not None
        return Page(changes, Cursor(cursor.id, upto, None, 0), moved)
    return Page(changes, Cursor(cursor.id, cursor.done, upto, changes[-1].id), True)


def commit(conn: psycopg.Connection[Any], cursor: Cursor) -> bool:
    """Store *cursor*; return ``False`` when its row is gone (the table was uninstalled)."""
    updated = conn.execute(
        """UPDATE reactor.row_change_cursors
           SET done = %s::pg_snapshot, upto = %s::pg_snapshot, after_id = %s, updated_at = now()
           WHERE id = %s""",
        (cursor.done, cursor.upto, cursor.after_id, cursor.id),
    ).rowcount
    return updated > 0


def trim(conn: psycopg.Connection[Any], table: str, limit: int) -> int:
    """Delete up to *limit* logged changes of *table* that every consumer group has passed.

    :return: how many were deleted
    """
    return conn.execute(
        """DELETE FROM reactor.row_changes WHERE table_name = %(table)s AND id IN (
               SELECT id FROM reactor.row_changes
               WHERE table_name = %(table)s AND xid < (
                   SELECT pg_snapshot_xmin(done) FROM reactor.row_change_cursors
                   WHERE table_name = %(table)s ORDER BY 1 LIMIT 1)
               LIMIT %(limit)s)""",
        {"table": table, "limit": limit},
    ).rowcount
