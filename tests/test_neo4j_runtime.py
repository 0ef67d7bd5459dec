"""The managed runtime, the cypher command and docker-compose, against real servers."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError

from patentminer.cli import main
from patentminer.cypher.connection import Graph, parse_param
from patentminer.cypher.runtime import NEO4J_VERSION, Neo4jRuntime, format_size, new_password, parse_size
from patentminer.errors import ConfigError, RuntimeSetupError

ROOT = Path(__file__).resolve().parents[1]


def pm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).with_name("patentminer")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_session_server_answers(graph: Graph) -> None:
    assert graph.read("RETURN 1 AS one") == [{"one": 1}]


def test_cli_lifecycle_in_its_own_home(tmp_path: Path, neo4j_install_home: Path) -> None:
    """start && cypher --json && stop, then the security properties of that server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    env.update(PATENTMINER_HOME=str(tmp_path), NEO4J_HOME=str(neo4j_install_home),
               PATENTMINER_NEO4J_HEAP="512m", PATENTMINER_NEO4J_PAGECACHE="64m")
    start = pm("neo4j", "start", env=env)
    assert start.returncode == 0, start.stderr
    assert "is running at bolt://127.0.0.1:" in start.stdout
    try:
        again = pm("neo4j", "start", env=env)
        assert again.returncode == 0 and "already running" in again.stdout

        status = json.loads(pm("neo4j", "status", "--json", env=env).stdout)
        assert set(status) == {"running", "uri", "user", "password_file", "home", "version", "heap", "pagecache"}
        assert (status["heap"], status["pagecache"]) == ("512m", "64m")
        assert status["running"] is True and status["version"] == NEO4J_VERSION
        pw_file = Path(status["password_file"])
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
        password = pw_file.read_text().strip()
        assert len(password) >= 24 and password != "neo4j"

        one = pm("cypher", "RETURN 1 AS one", "--json", env=env)
        assert one.returncode == 0, one.stderr
        assert [json.loads(line) for line in one.stdout.splitlines()] == [{"one": 1}]

        uri = status["uri"]
        port = int(uri.rsplit(":", 1)[1])
        # Listening on loopback only: the socket is bound to 127.0.0.1, not a wildcard.
        ss = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        local = {line.split()[3] for line in ss.splitlines()}
        assert local and local <= {f"127.0.0.1:{port}", f"[::ffff:127.0.0.1]:{port}"}, ss
        with pytest.raises(AuthError), GraphDatabase.driver(uri, auth=("neo4j", "neo4j")) as d:
            d.verify_connectivity()
    finally:
        stop = pm("neo4j", "stop", env=env)
    assert stop.returncode == 0 and stop.stdout.strip() == "Neo4j stopped."
    again = pm("neo4j", "stop", env=env)
    assert again.returncode == 0 and again.stdout.strip() == "Neo4j is not running; nothing to stop."
    status = json.loads(pm("neo4j", "status", "--json", env=env).stdout)
    assert status["running"] is False and status["uri"] is None


def test_taken_port_is_one_line_error(tmp_path: Path, neo4j_install_home: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_HOME", str(neo4j_install_home))
    monkeypatch.setenv("PATENTMINER_HOME", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = CliRunner().invoke(main, ["neo4j", "start", "--bolt-port", str(port)])
    assert result.exit_code == 1
    assert result.output == (f"Error: Port {port} on 127.0.0.1 is already in use; choose another --bolt-port "
                             "or leave it out to use a free one.\n")


def test_missing_java_and_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEO4J_HOME", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    rt = Neo4jRuntime(root=tmp_path)
    with pytest.raises(RuntimeSetupError, match=r"^`mvn` was not found on PATH; install Apache Maven"):
        rt.install()
    (tmp_path / "neo4j-5.26.30" / "lib").mkdir(parents=True)
    (tmp_path / "neo4j-5.26.30" / "lib" / "neo4j-kernel-5.26.30.jar").touch()
    with pytest.raises(RuntimeSetupError, match=r"^`java` was not found on PATH; install a JDK 17 or 21"):
        rt.start()


def test_not_installed_and_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEO4J_HOME", raising=False)
    monkeypatch.delenv("NEO4J_URI", raising=False)
    monkeypatch.setenv("PATENTMINER_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["neo4j", "start"])
    assert result.exit_code == 1
    assert result.output == (f"Error: Neo4j is not installed in {tmp_path.resolve()}/neo4j-{NEO4J_VERSION}/lib; "
                             "run `patentminer neo4j install` (or `make install`).\n")
    result = CliRunner().invoke(main, ["cypher", "RETURN 1"])
    assert result.output == ("Error: Neo4j is not running; start it with `patentminer neo4j start` "
                             "or set NEO4J_URI.\n")


def test_cypher_params_are_parameters_not_text(graph: Graph) -> None:
    runner = CliRunner()
    hostile = "x'}) DETACH DELETE n //"
    result = runner.invoke(main, ["cypher", "CREATE (t:PmTest {name: $name, n: $n}) RETURN t.name AS name, t.n AS n",
                                  "--param", f"name={hostile}", "--param", "n=5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"name": hostile, "n": 5}
    table = runner.invoke(main, ["cypher", "MATCH (t:PmTest) RETURN t.name AS name, t.n AS n"])
    assert table.output.splitlines()[0].split("|")[0].strip() == "name"
    assert table.output.splitlines()[-1] == "(1 row)"
    graph.write("MATCH (t:PmTest) DELETE t")


def test_cypher_from_file_and_errors(tmp_path: Path, graph: Graph) -> None:
    q = tmp_path / "q.cypher"
    q.write_text("UNWIND range(1, $n) AS i RETURN i")
    result = CliRunner().invoke(main, ["cypher", str(q), "--param", "n=3", "--json"])
    assert [json.loads(x)["i"] for x in result.output.splitlines()] == [1, 2, 3]
    bad = CliRunner().invoke(main, ["cypher", "RETURN nonsense("])
    assert bad.exit_code == 1 and bad.output.startswith("Error: Neo4j rejected the query: Invalid input")
    assert len(bad.output.strip().splitlines()) == 1
    long_query = "RETURN " + " + ".join(["1"] * 2000) + " AS n"
    assert json.loads(CliRunner().invoke(main, ["cypher", long_query, "--json"]).output) == {"n": 2000}
    missing = CliRunner().invoke(main, ["cypher", str(tmp_path / "nope.cypher")])
    assert missing.output == f"Error: query file {tmp_path / 'nope.cypher'} does not exist.\n"
    bad_param = CliRunner().invoke(main, ["cypher", "RETURN 1", "--param", "novalue"])
    assert bad_param.output == ("Error: --param 'novalue' is not key=value with a plain key; "
                                "use for example --param limit=10.\n")


def test_generated_password_is_never_an_option() -> None:
    """neo4j-admin took a password starting with '-' for an option (CI failed on one); generated ones
    are letters and digits."""
    passwords = [new_password() for _ in range(2000)]
    assert all(p.isalnum() and p.isascii() and len(p) == 32 for p in passwords)
    assert len(set(passwords)) == len(passwords)


def test_parse_param_types() -> None:
    assert parse_param("n=5") == ("n", 5)
    assert parse_param('ids=["a","b"]') == ("ids", ["a", "b"])
    assert parse_param("name=abc") == ("name", "abc")
    assert parse_param('id="10000001"') == ("id", "10000001")
    with pytest.raises(ConfigError):
        parse_param("1x=2")


def test_wrong_password_is_one_line(settings: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_PASSWORD", "wrong-password")
    result = CliRunner().invoke(main, ["cypher", "RETURN 1"])
    assert result.exit_code == 1
    assert result.output.endswith("refused the credentials: check NEO4J_USER / NEO4J_PASSWORD.\n")


def test_compose_matches_runtime_and_import_command() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["neo4j"]
    assert svc["image"] == f"neo4j:{NEO4J_VERSION}-community"
    assert all(p.startswith("127.0.0.1:") for p in svc["ports"])
    assert {v.split(":")[0] for v in svc["volumes"]} == set(compose["volumes"]) == {
        "neo4j-data", "neo4j-logs", "neo4j-import"}
    assert svc["env_file"] == ["neo4j.env"] and "healthcheck" in svc
    assert "NEO4J_AUTH=neo4j/neo4j" not in (ROOT / "neo4j.env.example").read_text()


@pytest.mark.parametrize("uri", ["localhost:7687", "http://127.0.0.1:7474", "bolt://[::1", "bolt://host:port", ""])
def test_malformed_neo4j_uri_is_one_line(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_URI", uri)
    monkeypatch.setenv("NEO4J_PASSWORD", "x")
    result = CliRunner().invoke(main, ["cypher", "RETURN 1"])
    assert result.exit_code == 1
    if uri == "":  # an empty NEO4J_URI means: not set, so the managed server is asked for
        return
    assert result.output == (f"Error: NEO4J_URI {uri!r} is not a Bolt URI; use bolt://HOST:PORT or "
                             "neo4j://HOST:PORT (schemes: bolt, bolt+s, bolt+ssc, neo4j, neo4j+s, neo4j+ssc).\n")


def test_memory_sized_from_machine_and_store(tmp_path: Path, neo4j_install_home: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """No sizes given: neo4j-admin's recommendation for half the machine, the page cache capped by the store;
    for a store that does not fit that cache, a small heap and a larger share for the cache."""
    monkeypatch.setenv("NEO4J_HOME", str(neo4j_install_home))
    rt = Neo4jRuntime(root=tmp_path)
    heap, cache = rt.recommend_memory(total=48 << 30)  # a 24g budget: neo4j-admin says 8g heap, 10g cache
    assert heap == "8g" and cache == "256m"  # an empty store needs no more than the floor
    store = tmp_path / "server" / "data" / "databases" / "neo4j"
    store.mkdir(parents=True)
    with (store / "neostore.nodestore.db").open("wb") as fh:
        fh.truncate(3 << 30)  # sparse: 3 GiB of store as far as sizes go
    assert rt.recommend_memory(total=48 << 30) == ("8g", f"{int(3 * 1024 * 1.2)}m")
    # A store larger than the recommended cache: a heap of at most 3g, 70% of the machine for Neo4j, the page
    # cache still capped by the store.
    heap, cache = rt.recommend_memory(total=8 << 30)  # neo4j-admin alone says a 512m cache for a 4g budget
    assert parse_size(heap) <= 3 << 30 and cache == f"{int(3 * 1024 * 1.2)}m"
    with (store / "neostore.nodestore.db").open("wb") as fh:
        fh.truncate(20 << 30)
    assert rt.recommend_memory(total=24 << 30) == ("3g", format_size(int((24 << 30) * 0.7) - (3 << 30)))


def test_extra_conf_cannot_override_owned_settings(tmp_path: Path, neo4j_install_home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_HOME", str(neo4j_install_home))
    monkeypatch.setenv("PATENTMINER_HOME", str(tmp_path))
    conf = tmp_path / "server" / "conf"
    conf.mkdir(parents=True)
    (conf / "neo4j-extra.conf").write_text("db.logs.query.enabled=OFF\nserver.memory.heap.max_size=16g\n")
    result = CliRunner().invoke(main, ["neo4j", "start", "--heap", "512m", "--pagecache", "64m"])
    assert result.exit_code == 1
    assert result.output == (f"Error: {conf / 'neo4j-extra.conf'}:2: server.memory.heap.max_size is set by "
                             "patentminer; remove the line and use `patentminer neo4j start --heap/--pagecache` (or "
                             "PATENTMINER_NEO4J_HEAP/_PAGECACHE).\n")
