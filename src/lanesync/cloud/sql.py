"""One small SQL interface over the cloud's two databases: SQLite (one machine) and PostgreSQL.

Statements are written once, with ``?`` placeholders and SQL both engines accept
(``INSERT ... ON CONFLICT ... DO NOTHING``, ``CAST(x AS BIGINT)``); the PostgreSQL side turns
``?`` into psycopg's ``%s``. Every database error becomes a ``StorageError`` naming what failed.
Calls are synchronous: the cloud runs them on its event loop, like a terminal's SQLite commits.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lanesync.errors import ConfigError, StorageError, UsageError
from lanesync.shell.storage import create_private_database

if TYPE_CHECKING:
    import psycopg

Row = tuple[Any, ...]


class Dialect(Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class Sql(Protocol):
    dialect: Dialect

    def execute(self, statement: str, args: Sequence[Any] = ()) -> list[Row]: ...

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


class SqliteSql:
    dialect = Dialect.SQLITE

    def __init__(self, path: Path) -> None:
        self._path = path
        create_private_database(path)  # head office's sales: the owner's eyes only
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from exc

    def execute(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return self._db.execute(statement, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"database {self._path}: {exc}") from exc

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._db.executemany(statement, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"database {self._path}: {exc}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


class PostgresSql:
    dialect = Dialect.POSTGRESQL

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                "--db postgresql://... needs psycopg: install it with "
                "`pip install 'lanesync[postgresql]'`"
            ) from exc
        self._url = redact(url)
        self._errors: type[Exception] = psycopg.Error
        try:
            # autocommit: transactions are explicit (``transaction()``), never left open.
            self._db: psycopg.Connection[Row] = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to {self._url}: {_first_line(exc)}") from exc

    def execute(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            cursor = self._db.execute(_to_format(statement), tuple(args), prepare=True)
            return cursor.fetchall() if cursor.description is not None else []
        except self._errors as exc:
            raise StorageError(f"database {self._url}: {_first_line(exc)}") from exc

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """``statement`` once per row. An ``INSERT ... VALUES (?, ...)`` is sent as one
        statement over the rows' columns as arrays (``_as_unnest``): psycopg's executemany
        costs about 10 us of the cloud's CPU a row, the arrays under 3 (binary; measured
        2026-12-07, benchmarks/README.md, "Where the cloud's CPU goes"). The rows must then not
        repeat a key of an ``ON CONFLICT ... DO UPDATE`` (PostgreSQL refuses to update a row
        twice in one statement); ``DO NOTHING`` keeps the first, as row by row."""
        if not rows:
            return
        unnest = _as_unnest(statement, len(rows[0]))
        try:
            if unnest is not None:
                columns = [list(column) for column in zip(*rows, strict=True)]
                if all(any(v is not None for v in c) for c in columns):
                    self._db.execute(unnest, columns, prepare=True)
                    return
            with self._db.cursor() as cursor:
                cursor.executemany(_to_format(statement), [tuple(r) for r in rows])
        except self._errors as exc:
            raise StorageError(f"database {self._url}: {_first_line(exc)}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self._db.transaction():
                yield
        except self._errors as exc:  # raised by COMMIT itself (e.g. a serialization failure)
            raise StorageError(f"database {self._url}: {_first_line(exc)}") from exc

    def close(self) -> None:
        self._db.close()


def _to_format(statement: str) -> str:
    # Our statements never hold a literal '?' or '%': placeholders are the only ones.
    return statement.replace("?", "%s")


_INSERT_VALUES = re.compile(
    r"(?P<head>INSERT INTO \w+ \([\w, ]+\)) VALUES \((?P<marks>\?(?:, \?)*)\)(?P<tail>.*)",
    re.DOTALL,
)


@functools.lru_cache(maxsize=64)  # a few dozen statements, each sent again and again
def _as_unnest(statement: str, width: int) -> str | None:
    """``INSERT INTO t (a, b) VALUES (?, ?) ...`` as ``INSERT INTO t (a, b) SELECT * FROM
    unnest(%b, %b) ...``, one array a column (binary: psycopg types each array from its
    values, the insert casts them to the columns'); None for any other statement."""
    match = _INSERT_VALUES.fullmatch(statement)
    if match is None or match["marks"].count("?") != width or "?" in match["tail"]:
        return None
    arrays = ", ".join(["%b"] * width)
    return f"{match['head']} SELECT * FROM unnest({arrays}){match['tail']}"  # noqa: S608 - our own statement, reshaped


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect(url: str) -> PostgresSql:
    if not url.startswith(("postgresql://", "postgres://")):
        raise UsageError(
            f"--db {redact(url)!r}: only postgresql://USER@HOST:PORT/DB URLs are supported "
            "(leave --db out for SQLite in CLOUD_DIR)"
        )
    return PostgresSql(url)
