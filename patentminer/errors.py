"""The one exception hierarchy of patentminer.

The library raises these; only the CLI turns them into ``Error: ...`` lines.
Messages are complete sentences that say what was wrong and what would be valid.
"""

from __future__ import annotations


class PatentminerError(Exception):
    """Base class of every error patentminer raises on purpose."""


class ConfigError(PatentminerError):
    """A parameter, option or job file value is invalid."""


class InputError(PatentminerError):
    """An input file is missing, unreadable or malformed."""


class RuntimeSetupError(PatentminerError):
    """The managed Neo4j runtime cannot be installed, started or stopped."""


class GraphError(PatentminerError):
    """Neo4j refused a query, is unreachable, or holds an unexpected graph."""


class OutputExistsError(PatentminerError):
    """An output directory already holds the result of another run."""
