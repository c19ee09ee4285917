"""Request bodies: strict JSON, parsed off the event loop when large, refused when they could
not be stored and served back exactly.

What a body may hold is decided once, here, for every route: JSON as RFC 8259 defines it
(UTF-8, no ``NaN``/``Infinity``, no lone surrogate in a string or a key), numbers that fit a
double (``1e400`` would become infinity, which JSON cannot carry back), no NUL character in
text (PostgreSQL's text cannot hold one: a login with one was a 500), and at most
``MAX_JSON_DEPTH`` levels of nesting. An ingest key could otherwise store an order that no
read can serve (a read would fail, or answer with text that is not JSON) and that hides the
good orders a search finds beside it. The parser is pydantic-core's (jiter), the one that
reads stored orders back, so what passes here reads back.

A refusal is a 422 naming where the problem is and what it is, never the value (and keys the
API does not declare are not named either: ``web.errors``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.to_thread
from pydantic_core import from_json
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from sellervault.web.limits import MAX_BODY_BYTES

MAX_JSON_DEPTH = 32
"""Levels of nesting in a body, the body itself the first: an ingest body's order is the
third, and a real SP-API order nests four more at most."""
INLINE_PARSE_BYTES = MAX_BODY_BYTES
"""Bodies up to this size are parsed in the event loop (well under a millisecond); larger
ones (ingest's, up to 16 MiB) on a worker thread of their own, one at a time
(``_LARGE_BODIES``): the parser holds the interpreter while it runs, so concurrent large
bodies would add up, and they must not take the threads that requests' database work
runs on. A body of millions of tiny values costs up to about a second; only an ingest key
that passed the guard can send one."""
_LARGE_BODIES = anyio.CapacityLimiter(1)

Location = tuple[str | int, ...]


class UnacceptableBodyError(StarletteHTTPException):
    """A body that is not JSON this API accepts (422). An HTTP exception because it is raised
    from inside FastAPI's reading of the body, which turns anything else into a 400."""

    def __init__(self, location: Location, problem: str) -> None:
        super().__init__(status_code=422)
        self.location = location
        self.problem = problem


class JSONBodyRequest(Request):
    """The request FastAPI reads a route's body from (``web.context.GuardedRoute``)."""

    async def json(self) -> Any:
        body = await self.body()
        if len(body) <= INLINE_PARSE_BYTES:
            return parse_json(body)
        return await anyio.to_thread.run_sync(parse_json, body, limiter=_LARGE_BODIES)


def parse_json(body: bytes) -> Any:
    """The body's JSON value, or ``UnacceptableBodyError`` naming the first problem."""
    try:
        value = from_json(body, allow_inf_nan=False)
    except ValueError:
        # Not JSON we take; find where, with a parser that reads further (slower, but only
        # for a refused request, and one that got past authentication).
        raise _diagnosis(body) from None
    problem = find_problem(value)
    if problem is not None:
        raise UnacceptableBodyError(*problem)
    return value


def find_problem(value: Any, location: Location = ("body",)) -> tuple[Location, str] | None:
    """The location and kind of the first value JSON cannot carry back exactly: nesting
    past ``MAX_JSON_DEPTH`` (``too_deep``), a number that is not finite (``not_finite``),
    text that is not Unicode (``invalid_unicode``: a lone surrogate) or holds a NUL
    (``nul_character``). The path is built only for a problem found (the walk runs over
    every value of every body)."""
    found = _problem_in(value, 1)
    if found is None:
        return None
    path, problem = found
    return (*location, *reversed(path)), problem


def _problem_in(value: Any, depth: int) -> tuple[list[str | int], str] | None:
    """``find_problem``'s walk: the path comes back reversed (appended on the way out)."""
    kind = type(value)
    if kind is str:
        problem = _text_problem(value)
        return None if problem is None else ([], problem)
    if kind is float:
        return None if math.isfinite(value) else ([], "not_finite")
    if kind is dict or kind is list:
        if depth > MAX_JSON_DEPTH:
            return [], "too_deep"
        is_object = kind is dict
        pairs: Iterable[tuple[Any, Any]] = value.items() if is_object else enumerate(value)
        for key, item in pairs:
            # (the common cases, inline: the walk runs over every value of every body)
            if is_object and not (key.isascii() and "\x00" not in key):
                problem = _text_problem(key)
                if problem is not None:
                    return [], problem
            if type(item) is str and item.isascii() and "\x00" not in item:
                continue
            if type(item) in _PLAIN:
                continue
            found = _problem_in(item, depth + 1)
            if found is not None:
                found[0].append(key)
                return found
    return None


_PLAIN = frozenset({int, bool, type(None)})  # (values that cannot hold a problem)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "nul_character"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_unicode"
    return None


def _diagnosis(body: bytes) -> UnacceptableBodyError:
    """Why pydantic-core refused ``body``, and where. NaN and Infinity it reads when asked,
    and the walk finds them; for a small body, the standard library's parser also reads
    what it refused for good (lone surrogates, deeper nesting), so the walk can name the
    place. A large body is not parsed a third time: its error names the body."""
    try:
        value = from_json(body, allow_inf_nan=True)
    except ValueError as exc:
        if len(body) > INLINE_PARSE_BYTES:
            return UnacceptableBodyError(("body",), _problem_named_by(str(exc)))
        try:
            value = json.loads(body)
        except RecursionError:
            return UnacceptableBodyError(("body",), "too_deep")
        except UnicodeDecodeError:
            return UnacceptableBodyError(("body",), "invalid_unicode")
        except ValueError:
            return UnacceptableBodyError(("body",), "json_invalid")
    try:
        problem = find_problem(value)
    except RecursionError:  # (the walk stops at MAX_JSON_DEPTH; this is a safety net)
        return UnacceptableBodyError(("body",), "too_deep")
    return UnacceptableBodyError(*(problem or (("body",), "json_invalid")))


_PARSER_PROBLEMS = [(re.compile("recursion limit"), "too_deep"),
                    (re.compile("surrogate|unicode|utf-8", re.IGNORECASE), "invalid_unicode")]


def _problem_named_by(message: str) -> str:
    """The problem code for pydantic-core's error message (a fixed text and a position)."""
    for pattern, problem in _PARSER_PROBLEMS:
        if pattern.search(message):
            return problem
    return "json_invalid"
