"""One awaitable interface over both databases, so each request-path operation is written once.

An operation on the request path (authenticating a token, reading or revealing an order,
appending a security event) is an ``async def`` that runs its statements through a
``Connection``. Where it runs decides which connection it gets (``Store.connect``):

- in a server's event loop on PostgreSQL, a ``LoopConnection``: psycopg's asynchronous
  connection, whose statements are awaited, so a request waits for the database without
  holding a thread;
- in a server's event loop on SQLite, a ``SQLiteLoopConnection``: the loop's own connection
  for reads (a WAL reader never waits), a worker thread for each write;
- everywhere else (the command line, a worker thread, a test), an ``InlineConnection``: the
  blocking driver, whose awaitables complete at once. The operation is then run to
  completion by ``drive``, on the calling thread, with no event loop at all.

The pure steps (compiling, converting parameters and rows) are ``Prepared``'s; only the
lines that touch the driver differ between the connections. Blocking steps inside an
operation (a transaction, reading a key not cached yet) go through ``Store.offload``: a
worker thread in the loop, in place when driven.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from sqlalchemy import Dialect, Engine

from sellervault.store.driver import DriverConnection, translate_error
from sellervault.store.prepared import Prepared

T = TypeVar("T")


class Connection(Protocol):
    """Where a request-path operation runs its ``Prepared`` statements, each on its own
    (autocommit): a one-statement lookup, or a write that is one statement."""

    @property
    def dialect(self) -> Dialect: ...

    async def all(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]: ...

    async def execute(self, statement: Prepared, params: Mapping[str, Any]) -> int: ...


@dataclass(frozen=True, slots=True)
class InlineConnection:
    """A blocking driver connection behind the awaitable interface: nothing here suspends."""

    connection: DriverConnection

    @property
    def dialect(self) -> Dialect:
        return self.connection.dialect

    async def all(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]:
        return statement.all(self.connection, params)

    async def execute(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        return statement.execute(self.connection, params)


class _Writer(Protocol):
    def execute_one(self, statement: Prepared, params: Mapping[str, Any]) -> int: ...


@dataclass(frozen=True, slots=True)
class SQLiteLoopConnection(InlineConnection):
    """The event loop's own SQLite connection: reads run right here, as inline ones do (in
    WAL mode a reader never waits for a writer, and a point lookup takes microseconds); a
    write could wait for SQLite's lock, so it runs on a worker thread, on a connection of
    the pool."""

    writer: _Writer

    async def execute(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        return await anyio.to_thread.run_sync(self.writer.execute_one, statement, params)


@dataclass(frozen=True, slots=True)
class LoopConnection:
    """A psycopg ``AsyncConnection`` in autocommit mode, from the event loop's pool."""

    engine: Engine
    driver: Any
    """The ``psycopg.AsyncConnection``."""

    @property
    def dialect(self) -> Dialect:
        return self.engine.dialect

    async def _cursor(self, statement: Prepared, params: Mapping[str, Any]) -> Any:
        sql, arguments = statement.arguments(self.dialect, params)
        cursor = self.driver.cursor()
        try:
            await cursor.execute(sql, arguments)
        except self.dialect.loaded_dbapi.Error as exc:
            await cursor.close()
            raise translate_error(self.dialect, sql, exc) from exc
        return cursor

    async def all(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]:
        cursor = await self._cursor(statement, params)
        try:
            raw = await cursor.fetchall()
            description = (cursor.description if statement.reads_description(self.dialect)
                           else None)
        finally:
            await cursor.close()
        return statement.rows(self.dialect, raw, description)

    async def execute(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        cursor = await self._cursor(statement, params)
        try:
            count: int = cursor.rowcount
        finally:
            await cursor.close()
        return count


class SuspendedOutsideLoopError(RuntimeError):
    """An operation driven without an event loop tried to wait for one: a bug (something in
    it awaited real asynchronous I/O instead of its ``InlineConnection``)."""


def drive(operation: Coroutine[Any, Any, T]) -> T:
    """Run ``operation`` to its end on this thread, without an event loop. Every await in an
    operation that got an ``InlineConnection`` completes at once, so the coroutine finishes
    on its first step; one that would suspend is closed and refused."""
    try:
        operation.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    operation.close()
    raise SuspendedOutsideLoopError("a request-path operation waited for an event loop")
