"""The ``patentminer`` command line: options in, one library call, output out."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from patentminer import __version__
from patentminer.errors import PatentminerError


@contextmanager
def user_errors() -> Iterator[None]:
    """The one place library errors become ``Error: ...`` and a non-zero exit."""
    try:
        yield
    except PatentminerError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        click.echo("Interrupted; run the same command again to resume.", err=True)
        sys.exit(130)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=str, ensure_ascii=False))


class DefaultGroup(click.Group):
    """A group whose first argument, when not a subcommand, goes to ``default_command``.

    ``patentminer cypher "RETURN 1"`` runs a query; ``patentminer cypher list`` lists queries.
    """

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="patentminer")
def main() -> None:
    """patentminer: PatentsView -> Neo4j citation/CPC graph -> hard-negative training data.

    \b
    Example:
        patentminer neo4j start
        patentminer cypher "MATCH (p:Patent) RETURN count(p) AS patents"
    """


# --------------------------------------------------------------------------- neo4j
@main.group("neo4j")
def neo4j_group() -> None:
    """Install, start, stop and inspect the managed Neo4j Community server.

    \b
    Example:
        patentminer neo4j install && patentminer neo4j start && patentminer neo4j status --json
    """


@neo4j_group.command("install")
@click.option("--force", is_flag=True, help="Download again even when installed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def neo4j_install(force: bool, as_json: bool) -> None:
    """Assemble Neo4j Community from Maven Central into $PATENTMINER_HOME (default ~/.patentminer).

    \b
    Example:
        patentminer neo4j install
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        rt = Neo4jRuntime()
        if not as_json and not force and rt.installed_version() is None:
            click.echo(f"Resolving Neo4j {rt.version} from Maven Central (about 125 MB)...", err=True)
        info = rt.install(force=force)
    if as_json:
        echo_json(info)
    elif info["source"] == "existing":
        click.echo(f"Neo4j {info['version']} is already installed in {info['lib']} ({info['jars']} jars).")
    else:
        click.echo(f"Installed Neo4j {info['version']}: {info['jars']} jars in {info['lib']} "
                   f"from {info['source']} in {info['seconds']}s.")


@neo4j_group.command("start")
@click.option("--bolt-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Bolt port on 127.0.0.1; 0 picks a free one (kept across restarts while free).")
@click.option("--heap", default=None, help="JVM heap, like 2g (env PATENTMINER_NEO4J_HEAP; default 2g).")
@click.option("--pagecache", default=None, help="Page cache, like 1g (env PATENTMINER_NEO4J_PAGECACHE).")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for Bolt.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def neo4j_start(bolt_port: int, heap: str | None, pagecache: str | None, timeout: float, as_json: bool) -> None:
    """Start the managed server on 127.0.0.1 and wait until Bolt answers.

    \b
    Example:
        patentminer neo4j start --heap 4g --pagecache 4g
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        status, started = Neo4jRuntime().start(bolt_port=bolt_port, heap=heap, pagecache=pagecache,
                                               timeout=timeout)
    if as_json:
        echo_json(status.to_json())
    elif started:
        click.echo(f"Neo4j {status.version} is running at {status.uri} (user {status.user}, "
                   f"password in {status.password_file}).")
    else:
        click.echo(f"Neo4j is already running at {status.uri} (pid {status.pid}); nothing to do.")


@neo4j_group.command("stop")
def neo4j_stop() -> None:
    """Shut the managed server down cleanly (only the process it started).

    \b
    Example:
        patentminer neo4j stop
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        stopped = Neo4jRuntime().stop()
    click.echo("Neo4j stopped." if stopped else "Neo4j is not running; nothing to stop.")


@neo4j_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def neo4j_status(as_json: bool) -> None:
    """Say whether the managed server runs, where, and as whom.

    \b
    Example:
        patentminer neo4j status --json
    """
    from patentminer.cypher.runtime import Neo4jRuntime

    with user_errors():
        status = Neo4jRuntime().status()
    if as_json:
        out = status.to_json()
        out.pop("pid", None)
        echo_json(out)
    elif status.running:
        click.echo(f"running: {status.uri} (Neo4j {status.version}, pid {status.pid}, home {status.home})")
    else:
        click.echo(f"stopped (Neo4j {status.version or 'not installed'}, home {status.home})")


# --------------------------------------------------------------------------- cypher
@main.group("cypher", cls=DefaultGroup)
def cypher_group() -> None:
    """Run Cypher against the configured server, or browse the versioned query registry.

    \b
    Example:
        patentminer cypher "MATCH (p:Patent {id: $id}) RETURN p.title" --param id='"10000001"'
        patentminer cypher list
    """


@cypher_group.command("run")
@click.argument("query_or_file")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A query parameter; VALUE is JSON when it parses, else a string. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON lines.")
def cypher_run(query_or_file: str, params: tuple[str, ...], as_json: bool) -> None:
    """Run QUERY_OR_FILE (Cypher text, or a path to a .cypher file) and print the rows.

    \b
    Example:
        patentminer cypher "RETURN 1 AS one" --json
        patentminer cypher query.cypher --param limit=10
    """
    from patentminer.cypher.connection import Graph, parse_param

    with user_errors():
        path = Path(query_or_file)
        query = path.read_text() if query_or_file.endswith(".cypher") or path.is_file() else query_or_file
        values = dict(parse_param(p) for p in params)
        with Graph.connect() as graph:
            keys, rows = graph.run(query, values)
    if as_json:
        for row in rows:
            echo_json(dict(zip(keys, row, strict=True)))
    else:
        click.echo(format_table(keys, rows))


def format_table(keys: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        text = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
        text = text.replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(k)] + [len(r[i]) for r in cells]) for i, k in enumerate(keys)]
    lines = [" | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)

