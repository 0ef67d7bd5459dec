"""Connecting to the configured Neo4j and running Cypher with parameters.

The server is the one named by ``NEO4J_URI`` (with ``NEO4J_USER``, ``NEO4J_PASSWORD``,
``NEO4J_DATABASE``) when that is set, else the managed runtime. Values always reach
Cypher as ``$parameters``; driver errors are re-raised as :class:`GraphError`.

Example::

    with Graph.connect() as graph:
        rows = graph.read("MATCH (p:Patent {id: $id}) RETURN p.title AS title", {"id": "10000001"})
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import neo4j
from neo4j import GraphDatabase, RoutingControl
from neo4j.exceptions import AuthError, ClientError, ConfigurationError, Neo4jError, ServiceUnavailable

from patentminer.cypher.runtime import NEO4J_USER, Neo4jRuntime
from patentminer.errors import ConfigError, GraphError

#: The URI schemes of a Bolt server (the driver's HTTP preview is not something patentminer speaks).
BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def check_uri(uri: str) -> str:
    """``uri`` when it is a Bolt URI with a host, else a one-line :class:`ConfigError`."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        ok = parts.scheme in BOLT_SCHEMES and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"NEO4J_URI {uri!r} is not a Bolt URI; use bolt://HOST:PORT or neo4j://HOST:PORT "
                          f"(schemes: {', '.join(BOLT_SCHEMES)}).")
    return uri


@dataclass(frozen=True)
class Neo4jSettings:
    """Where and as whom to connect."""

    uri: str
    user: str
    password: str
    database: str = "neo4j"
    managed: bool = False

    @classmethod
    def resolve(cls, runtime: Neo4jRuntime | None = None) -> Neo4jSettings:
        """``NEO4J_URI`` and friends when set, else the running managed server."""
        uri = os.environ.get("NEO4J_URI")
        database = os.environ.get("NEO4J_DATABASE", "neo4j")
        if uri:
            check_uri(uri)
            password = os.environ.get("NEO4J_PASSWORD")
            if password is None:
                raise GraphError("NEO4J_URI is set but NEO4J_PASSWORD is not; set both (and NEO4J_USER if not neo4j).")
            return cls(uri, os.environ.get("NEO4J_USER", NEO4J_USER), password, database, managed=False)
        runtime = runtime or Neo4jRuntime()
        status = runtime.status()
        if not status.running or status.uri is None:
            raise GraphError("Neo4j is not running; start it with `patentminer neo4j start` or set NEO4J_URI.")
        return cls(status.uri, NEO4J_USER, runtime.password(), database, managed=True)


@contextmanager
def wrap_driver_errors(uri: str) -> Iterator[None]:
    """Turn driver exceptions into one-line :class:`GraphError` messages."""
    try:
        yield
    except AuthError as e:
        raise GraphError(f"Neo4j at {uri} refused the credentials: check NEO4J_USER / NEO4J_PASSWORD.") from e
    except ServiceUnavailable as e:
        raise GraphError(
            f"Cannot reach Neo4j at {uri}; start it with `patentminer neo4j start` or fix NEO4J_URI."
        ) from e
    except ClientError as e:
        raise GraphError(f"Neo4j rejected the query: {(e.message or str(e)).splitlines()[0]}") from e
    except Neo4jError as e:
        raise GraphError(f"Neo4j failed: {(e.message or str(e)).splitlines()[0]}") from e


def to_plain(value: Any) -> Any:
    """Driver values (nodes, relationships, temporal types) as JSON-friendly Python."""
    if isinstance(value, neo4j.graph.Node):
        return {"labels": sorted(value.labels), **{k: to_plain(v) for k, v in value.items()}}
    if isinstance(value, neo4j.graph.Relationship):
        return {"type": value.type, **{k: to_plain(v) for k, v in value.items()}}
    if isinstance(value, neo4j.graph.Path):
        return [to_plain(n) for n in value.nodes]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if hasattr(value, "iso_format"):
        return value.iso_format()
    return value


class Graph:
    """A connected driver plus the database to use. Close it, or use it as a context manager."""

    def __init__(self, settings: Neo4jSettings) -> None:
        self.settings = settings
        try:
            self.driver = GraphDatabase.driver(check_uri(settings.uri), auth=(settings.user, settings.password))
        except (ValueError, ConfigurationError) as e:
            raise ConfigError(f"cannot connect to {settings.uri!r}: {str(e).splitlines()[0]}") from e
        with wrap_driver_errors(settings.uri):
            try:
                self.driver.verify_connectivity()
            except BaseException:
                self.driver.close()
                raise

    @classmethod
    def connect(cls, runtime: Neo4jRuntime | None = None) -> Graph:
        return cls(Neo4jSettings.resolve(runtime))

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.driver.close()

    # No bookmark manager: one server, where a commit is visible at once, and an import replaces the
    # database under a live driver, which would leave bookmarks pointing past the new database's history.
    def read(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query with read routing; rows as dicts."""
        with wrap_driver_errors(self.settings.uri):
            records, _, _ = self.driver.execute_query(
                query, parameters_=dict(params or {}), routing_=RoutingControl.READ,
                database_=self.settings.database, bookmark_manager_=None,
            )
        return [r.data() for r in records]

    def read_table(self, query: str, schema: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Any:
        """Run a read query that returns many rows of plain values; a Polars DataFrame with ``schema``.

        For bulk reads of a bounded size (a chunk of ids): the whole result comes in one pull and rows stay
        value lists, where ``read`` pulls 1,000 at a time and turns each into a dict (about half the time;
        benchmarks/RESULTS.md, "Mining"). Results of any size: :meth:`stream_table`. The query's columns
        must come in ``schema``'s order.
        """
        import polars as pl

        with wrap_driver_errors(self.settings.uri), self.driver.session(
                database=self.settings.database, default_access_mode=neo4j.READ_ACCESS, fetch_size=-1,
                bookmark_manager=None) as session:
            rows = session.execute_read(lambda tx: tx.run(query, dict(params or {})).values())
        return pl.DataFrame(rows, schema=dict(schema), orient="row")

    def stream_table(self, query: str, schema: Mapping[str, Any], params: Mapping[str, Any] | None = None,
                     chunk_rows: int = 250_000) -> Iterator[Any]:
        """Run a read query and yield its rows as Polars DataFrames of up to ``chunk_rows`` rows.

        For results too large to hold as Python objects at once (a row per patent of a full-size
        graph): only one chunk is ever a list of values. Columns come in ``schema``'s order.
        """
        import polars as pl

        with wrap_driver_errors(self.settings.uri), self.driver.session(
                database=self.settings.database, default_access_mode=neo4j.READ_ACCESS, fetch_size=10_000,
                bookmark_manager=None) as session, session.begin_transaction() as tx:
            result = tx.run(query, dict(params or {}))
            rows: list[list[Any]] = []
            for record in result:
                rows.append(record.values())
                if len(rows) == chunk_rows:
                    yield pl.DataFrame(rows, schema=dict(schema), orient="row")
                    rows = []
            if rows:
                yield pl.DataFrame(rows, schema=dict(schema), orient="row")

    def write(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a write query in a managed transaction; rows as dicts."""
        with wrap_driver_errors(self.settings.uri):
            records, _, _ = self.driver.execute_query(
                query, parameters_=dict(params or {}), routing_=RoutingControl.WRITE,
                database_=self.settings.database, bookmark_manager_=None,
            )
        return [r.data() for r in records]

    def run(self, query: str, params: Mapping[str, Any] | None = None) -> tuple[list[str], list[list[Any]]]:
        """Run any query in an auto-commit transaction (so ``CALL {} IN TRANSACTIONS`` works).

        Returns ``(column names, rows)`` with values made JSON-friendly.
        """
        with wrap_driver_errors(self.settings.uri), self.driver.session(database=self.settings.database) as session:
            result = session.run(query, dict(params or {}))
            keys = list(result.keys())
            rows = [[to_plain(v) for v in record.values()] for record in result]
        return keys, rows

    def count(self, query: str, params: Mapping[str, Any] | None = None) -> int:
        rows = self.read(query, params)
        return int(next(iter(rows[0].values()))) if rows else 0


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line: the value is JSON when it parses, else a string.

    ``n=5`` gives the integer 5, ``ids=["a","b"]`` a list, ``name=abc`` the string "abc";
    quote a number to keep it a string: ``id='"10000001"'``.
    """
    import json

    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise ConfigError(f"--param {text!r} is not key=value with a plain key; use for example --param limit=10.")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value
