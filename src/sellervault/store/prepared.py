"""Prepared statements for the per-request hot path.

A statement is built with SQLAlchemy as usual and compiled once per dialect; each execution
then goes straight to the driver's cursor, with parameters and results converted by the same
bind and result processors SQLAlchemy itself would apply (so values are the same as through
``Connection.execute``). For a one-row lookup, SQLAlchemy's per-execution machinery (cache
key, execution context, events, result object) costs about ten times the query itself; a
reveal runs four such statements, authentication one.

It runs on the caller's session, Core connection or driver connection (``store.driver``),
inside the caller's transaction, or awaited through ``store.connection`` (which uses
``arguments`` and ``rows``, the steps that do no I/O); a driver error is raised as
SQLAlchemy's exception class for it, never showing the parameters.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Executable
from sqlalchemy.sql.compiler import Compiled

from sellervault.store.driver import Db, driver_of, translate_error

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order (qmark), or None (named)
    binds: tuple[tuple[str, Processor], ...]  # parameters whose values need converting
    constants: tuple[tuple[str, Any], ...]  # values written into the statement (id == 1)


@dataclass(frozen=True, slots=True)
class _Reader:
    row: Any  # a namedtuple class with the statement's column names
    processors: tuple[Processor | None, ...]


class Prepared:
    """One statement, compiled once per dialect, run on the driver's cursor."""

    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        self._compiled: dict[str, _Compiled] = {}
        self._readers: dict[str, _Reader] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled: Compiled = self._statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            binds = []
            constants = []
            for name, bind in compiled.binds.items():  # type: ignore[attr-defined]
                if bind.expanding:
                    raise ValueError(f"{name}: expanding (IN-list) parameters are not supported")
                if not bind.required:
                    constants.append((name, bind.effective_value))
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    binds.append((name, processor))
            positional = compiled.positiontup  # type: ignore[attr-defined]
            found = self._compiled[dialect.name] = _Compiled(
                compiled.string, tuple(positional) if dialect.positional else None,
                tuple(binds), tuple(constants))
        return found

    def _reader(self, dialect: Dialect, description: Sequence[Any]) -> _Reader:
        found = self._readers.get(dialect.name)
        if found is None:
            columns = self._statement.selected_columns  # type: ignore[attr-defined]
            processors = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(columns, description, strict=True))
            row = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
            found = self._readers[dialect.name] = _Reader(row, processors)
        return found

    def arguments(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL and its parameters, converted, in the driver's form."""
        compiled = self._compile(dialect)
        values = dict(compiled.constants)
        values.update(params)
        for name, processor in compiled.binds:
            values[name] = processor(values[name])
        arguments: Any = (values if compiled.positional is None
                          else tuple(values[name] for name in compiled.positional))
        return compiled.sql, arguments

    def reads_description(self, dialect: Dialect) -> bool:
        """Whether ``rows`` needs the cursor's description (only until it has built its
        reader for ``dialect``)."""
        return dialect.name not in self._readers

    def rows(self, dialect: Dialect, raw: Sequence[Any], description: Any) -> list[Any]:
        """Rows as named tuples of converted values (``description`` is read only when the
        reader is first built: psycopg makes it anew on each access)."""
        reader = self._readers.get(dialect.name) or self._reader(dialect, description)
        make, processors = reader.row._make, reader.processors
        return [make([value if convert is None or value is None else convert(value)
                      for value, convert in zip(row, processors, strict=True)])
                for row in raw]

    def _run(self, db: Db, params: Mapping[str, Any]) -> tuple[Dialect, Any]:
        connection = driver_of(db)
        dialect = connection.dialect
        sql, arguments = self.arguments(dialect, params)
        cursor = connection.driver.cursor()
        try:
            cursor.execute(sql, arguments)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise translate_error(dialect, sql, exc) from exc
        return dialect, cursor

    def all(self, db: Db, params: Mapping[str, Any]) -> list[Any]:
        """Every row, as named tuples of converted values."""
        dialect, cursor = self._run(db, params)
        try:
            raw = cursor.fetchall()
            description = cursor.description if self.reads_description(dialect) else None
        finally:
            cursor.close()
        return self.rows(dialect, raw, description)

    def first(self, db: Db, params: Mapping[str, Any]) -> Any | None:
        rows = self.all(db, params)
        return rows[0] if rows else None

    def execute(self, db: Db, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        _, cursor = self._run(db, params)
        try:
            count: int = cursor.rowcount
        finally:
            cursor.close()
        return count
