"""Shared fixtures: one real Neo4j for the whole session.

The session starts a managed server in a temporary PATENTMINER_HOME, with the jars
of the normal install (``make install``) reached through NEO4J_HOME, the same path an
official tarball takes. With NEO4J_URI set, that server is used instead. Nothing here
fakes the database.

Under pytest-xdist (``make test`` runs two workers, a module per worker) each worker starts its own server
and keeps torch to one thread: two processes with two spinning OpenMP threads each on two cores made the
training tests several times slower than running them one after another. Module fixtures load their graphs
with the Bolt import (``method="unwind"``): neo4j-admin restarts the server each time, and its path is tested
in test_etl_import.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses the tests start
    import torch

    torch.set_num_threads(1)

from patentminer.cypher.connection import Graph, Neo4jSettings
from patentminer.cypher.runtime import Neo4jRuntime, patentminer_home


def clear_graph(graph: Graph) -> None:
    """Empty the database: data, constraints and indexes."""
    graph.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
    for row in graph.read("SHOW CONSTRAINTS YIELD name RETURN name"):
        graph.write(f"DROP CONSTRAINT `{row['name']}` IF EXISTS")
    for row in graph.read("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"):
        graph.write(f"DROP INDEX `{row['name']}` IF EXISTS")


@pytest.fixture(scope="session")
def neo4j_install_home() -> Path:
    """The Neo4j lib directory's parent from the normal install."""
    rt = Neo4jRuntime(root=patentminer_home())
    if os.environ.get("NEO4J_HOME"):
        return Path(os.environ["NEO4J_HOME"])
    rt.install()  # a no-op after `make install`
    return rt.install_dir


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory, neo4j_install_home: Path) -> Iterator[Neo4jRuntime | None]:
    """The session's managed server, or None when NEO4J_URI names an external one."""
    if os.environ.get("NEO4J_URI"):
        if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
            pytest.exit("NEO4J_URI names one database that every worker would empty; run pytest without -n.",
                        returncode=4)
        yield None
        return
    mp = pytest.MonkeyPatch()
    mp.setenv("NEO4J_HOME", str(neo4j_install_home))
    rt = Neo4jRuntime(root=tmp_path_factory.mktemp("pmhome"))
    rt.start(heap="2g", pagecache="256m")
    status = rt.status()
    assert status.uri is not None
    mp.setenv("NEO4J_URI", status.uri)
    mp.setenv("NEO4J_USER", "neo4j")
    mp.setenv("NEO4J_PASSWORD", rt.password())
    try:
        yield rt
    finally:
        rt.stop()
        mp.undo()


@pytest.fixture(scope="session")
def settings(runtime: Neo4jRuntime | None) -> Neo4jSettings:
    return Neo4jSettings.resolve()


@pytest.fixture(scope="module")
def graph(settings: Neo4jSettings) -> Iterator[Graph]:
    """A connection to an empty database, emptied again after the module."""
    g = Graph(settings)
    clear_graph(g)
    try:
        yield g
    finally:
        clear_graph(g)
        g.close()
