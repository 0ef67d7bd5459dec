"""The registry of versioned Cypher files under ``cypher/queries/NAME/vN.cypher``.

Each file starts with a header of ``// key: value`` lines (name, version, description,
params, returns). A released version never changes: ``cypher/queries.lock.json`` holds
the SHA-256 of every released file and :meth:`Registry.verify_lock` (run by the tests)
fails when one was edited. A change of behaviour is a new file, ``v(N+1).cypher``.

Example::

    q = Registry.load().get("schema")          # the latest version
    q = Registry.load().get("citation-cpc@v1")  # an exact version
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from patentminer.errors import ConfigError

_HEADER = re.compile(r"^//\s?(\w+):\s?(.*)$")
_PARAM = re.compile(r"^//\s+\$(\w+):\s*([\w\[\]]+)(?:\s*=\s*(\S+))?\s*(?:-\s*(.*))?$")
_BODY_PARAM = re.compile(r"\$(\w+)")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    description: str


@dataclass(frozen=True)
class Query:
    """One released (or draft) version of a named query."""

    name: str
    version: int
    description: str
    params: tuple[Param, ...]
    returns: str
    body: str
    path: Path
    sha256: str

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    def provenance(self) -> dict[str, object]:
        """What a dataset records of a query it ran: ref, sha256, and whether that version is released."""
        return {"ref": self.ref, "sha256": self.sha256, "released": read_lock().get(self.ref) == self.sha256}

    def statements(self) -> list[str]:
        """The body split on ``;`` at line ends (schema files hold several statements)."""
        return [s.strip() for s in re.split(r";\s*$", self.body, flags=re.M) if s.strip()]

    def body_params(self) -> set[str]:
        no_comments = "\n".join(line.split("//", 1)[0] for line in self.body.splitlines())
        no_strings = re.sub(r"'[^']*'|\"[^\"]*\"", "''", no_comments)
        return set(_BODY_PARAM.findall(no_strings))


def queries_dir() -> Path:
    return Path(str(resources.files("patentminer.cypher").joinpath("queries")))


def lock_path() -> Path:
    return Path(str(resources.files("patentminer.cypher").joinpath("queries.lock.json")))


def parse_query(path: Path) -> Query:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    meta: dict[str, str] = {}
    params: list[Param] = []
    i = 0
    key = None
    while i < len(lines) and lines[i].startswith("//"):
        line = lines[i]
        m_param = _PARAM.match(line)
        m = _HEADER.match(line)
        if key == "params" and m_param:
            params.append(Param(m_param.group(1), m_param.group(2), m_param.group(3), m_param.group(4) or ""))
        elif m and not line.startswith("//  "):
            key = m.group(1)
            meta[key] = m.group(2).strip()
        elif key:
            meta[key] = (meta.get(key, "") + " " + line[2:].strip()).strip()
        i += 1
    for required in ("name", "version", "description", "params", "returns"):
        if required not in meta:
            raise ConfigError(f"{path}: header has no '// {required}:' line; every query file starts with "
                              "name, version, description, params and returns.")
    return Query(
        name=meta["name"], version=int(meta["version"]), description=meta["description"], params=tuple(params),
        returns=meta["returns"], body="\n".join(lines[i:]).strip() + "\n", path=path,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


@dataclass(frozen=True)
class Registry:
    queries: tuple[Query, ...]

    @staticmethod
    def load(root: Path | None = None) -> Registry:
        root = root or queries_dir()
        found = []
        for path in sorted(root.glob("*/v*.cypher")):
            q = parse_query(path)
            if q.name != path.parent.name or f"v{q.version}.cypher" != path.name:
                raise ConfigError(f"{path}: header says {q.ref}; the file must be {q.name}/v{q.version}.cypher.")
            found.append(q)
        return Registry(tuple(sorted(found, key=lambda q: (q.name, q.version))))

    def names(self) -> list[str]:
        return sorted({q.name for q in self.queries})

    def versions(self, name: str) -> list[Query]:
        return [q for q in self.queries if q.name == name]

    def latest(self, name: str) -> Query:
        versions = self.versions(name)
        if not versions:
            raise ConfigError(f"unknown query {name!r}; known: {', '.join(self.names())}.")
        return versions[-1]

    def get(self, ref: str) -> Query:
        """``NAME`` (latest) or ``NAME@vN``."""
        name, _, version = ref.partition("@")
        if not version:
            return self.latest(name)
        if not re.fullmatch(r"v\d+", version):
            raise ConfigError(f"{ref!r}: the version must look like @v1.")
        for q in self.versions(name) or [self.latest(name)]:
            if q.version == int(version[1:]):
                return q
        known = ", ".join(q.ref for q in self.versions(name))
        raise ConfigError(f"unknown version {ref!r}; {name} has {known}.")

    def checked(self, ref: str) -> Query:
        """The query ``ref`` names, after checking it against the lock, as neo4j-migrations validates
        checksums before it migrates: a released version whose file was edited is refused."""
        q = self.get(ref)
        digest = read_lock().get(q.ref)
        if digest is not None and digest != q.sha256:
            raise ConfigError(f"{q.path}: {q.ref} was edited after its release (sha256 {q.sha256[:12]}, released as "
                              f"{digest[:12]}); restore the file and put the change in v{q.version + 1}.cypher.")
        return q

    def verify_lock(self, lock: dict[str, str]) -> list[str]:
        """Problems: a released file whose hash changed, or a locked file that disappeared."""
        problems = []
        by_ref = {q.ref: q for q in self.queries}
        for ref, digest in sorted(lock.items()):
            q = by_ref.get(ref)
            if q is None:
                problems.append(f"{ref} is released (in queries.lock.json) but its file is gone")
            elif q.sha256 != digest:
                problems.append(f"{ref} was edited after release ({q.path}); restore it and add "
                                f"v{q.version + 1}.cypher instead")
        return problems


def read_lock() -> dict[str, str]:
    path = lock_path()
    return json.loads(path.read_text()) if path.exists() else {}


def release_new(registry: Registry) -> list[str]:
    """Add every query version missing from the lock file; never touches locked entries."""
    lock = read_lock()
    added = [q.ref for q in registry.queries if q.ref not in lock]
    for q in registry.queries:
        lock.setdefault(q.ref, q.sha256)
    lock_path().write_text(json.dumps(dict(sorted(lock.items())), indent=2) + "\n")
    return added
