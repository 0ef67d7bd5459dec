"""Every command's --help shows an example, and the README's commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from patentminer.cli import main


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += walk(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def test_every_command_help_has_an_example() -> None:
    runner = CliRunner()
    for path in walk(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example:" in result.output, f"`patentminer {' '.join(path)} --help` has no example"
        example = result.output.split("Example:", 1)[1]
        assert "patentminer" in example, path


def test_readme_commands_exist() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code_lines, inside = [], False
    for line in readme.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            code_lines.append(line)
    code = "\n".join(code_lines)
    commands = {tuple(m.split()[:2]) for m in re.findall(r"^\s*patentminer ([a-z0-9-]+(?: [a-z]+)?)", code, re.M)}
    assert commands
    known = {p for p in walk(main) if p}
    for cmd in commands:
        first = cmd[:1]
        assert first in known or cmd in known, f"README shows `patentminer {' '.join(cmd)}`, which does not exist"


def test_mine_help_names_every_strategy() -> None:
    from patentminer.cypher.mining import STRATEGIES

    # Wide enough that click does not break a name at its hyphen.
    text = " ".join(CliRunner().invoke(main, ["mine", "--help"], terminal_width=400).output.split())
    for name in STRATEGIES:
        option = text.split("--strategy TEXT", 1)[1].split("--out DIRECTORY", 1)[0]
        assert name in option, f"`mine --help` does not name the {name} strategy"
