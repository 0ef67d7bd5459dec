"""The managed Neo4j Community server: install from Maven Central, start, stop, status.

patentminer runs its own Neo4j so that every machine (a laptop, CI, a GPU box) has
the same real database without Docker. Everything lives under one directory,
``$PATENTMINER_HOME`` (default ``~/.patentminer``):

- ``neo4j-<version>/lib/``: the jars of the official distribution, copied there by
  ``mvn dependency:copy-dependencies`` from the assembly POM;
- ``server/``: the state of the one managed server (``conf/``, ``data/``, ``logs/``,
  ``run/``, the generated password in a 0600 file, ``state.json``).

Example::

    rt = Neo4jRuntime()
    rt.install()
    status = rt.start()
    print(status.uri)
    rt.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import string
import subprocess
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import psutil

from patentminer.errors import RuntimeSetupError

#: The one Neo4j line of the project; docker-compose.yml uses the same tag (a test checks).
NEO4J_VERSION = "5.26.30"
NEO4J_USER = "neo4j"
SERVER_MAIN = "org.neo4j.server.CommunityEntryPoint"
ADMIN_MAIN = "org.neo4j.server.startup.Neo4jAdminCommand"
#: Of the machine's memory, the share that automatic sizing offers Neo4j (heap and page cache together). The
#: rest is for patentminer's own process (mining lists every anchor, training holds a model) and the OS.
NEO4J_MEMORY_SHARE = 0.5
#: For a store larger than the page cache that share gives: the share Neo4j gets then, and the heap it is
#: given, so that the rest goes to the page cache (mining reads the store at random; a heap beyond a few
#: GB holds nothing the mining queries need, while every GB of cache spares disk reads).
NEO4J_LARGE_STORE_SHARE = 0.7
NEO4J_LARGE_STORE_HEAP = 3 << 30
#: Settings the runtime owns (the JVM is started with them); neo4j-extra.conf must not set them.
_OWNED = ("server.memory.heap.", "server.memory.pagecache.size", "server.default_listen_address",
          "server.bolt.listen_address", "dbms.security.auth_enabled")

_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+ExitOnOutOfMemoryError",
    "-Dfile.encoding=UTF-8",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
)


def new_password(length: int = 32) -> str:
    """A random password of letters and digits (~190 bits).

    Letters and digits only: neo4j-admin reads an argument that starts with '-' as an option, so
    a URL-safe token (1 in 64 start with '-') made ``set-initial-password`` fail now and then.
    """
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class ServerStatus:
    """What ``patentminer neo4j status --json`` prints."""

    running: bool
    uri: str | None
    user: str
    password_file: str
    home: str
    version: str | None
    pid: int | None = None
    heap: str | None = None
    pagecache: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def patentminer_home() -> Path:
    """The directory holding the Neo4j install and the managed server's state."""
    env = os.environ.get("PATENTMINER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".patentminer"


def find_executable(name: str, java_home_env: str | None = None) -> str:
    """Locate ``java`` or ``mvn``; raise a one-line explanation when it is missing."""
    if java_home_env:
        home = os.environ.get(java_home_env)
        if home and (Path(home) / "bin" / name).exists():
            return str(Path(home) / "bin" / name)
    found = shutil.which(name)
    if not found:
        hint = "install a JDK 17 or 21 (or set JAVA_HOME)" if name == "java" else "install Apache Maven"
        raise RuntimeSetupError(f"`{name}` was not found on PATH; {hint} and run the command again.")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _process_cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def parse_size(value: str) -> int:
    """``2g``, ``512m``, ``4096k`` (case-insensitive) -> bytes."""
    m = re.fullmatch(r"(\d+)([kmg])", value.strip().lower())
    if not m:
        raise RuntimeSetupError(f"{value!r} is not a size; use a number with k, m or g, like 2g.")
    return int(m.group(1)) << {"k": 10, "m": 20, "g": 30}[m.group(2)]


def format_size(n: int) -> str:
    """Bytes -> the largest whole unit Neo4j accepts (``1536m``, ``2g``), rounded down to a megabyte."""
    mb = max(1, n >> 20)
    return f"{mb >> 10}g" if mb % 1024 == 0 else f"{mb}m"


class Neo4jRuntime:
    """One managed Neo4j server, its install and its state directory.

    ``root`` defaults to :func:`patentminer_home`. With ``NEO4J_HOME`` set to an
    official Neo4j tarball, its ``lib/`` is used instead of the Maven install.
    """

    def __init__(self, root: Path | None = None, version: str = NEO4J_VERSION) -> None:
        self.root = (root or patentminer_home()).resolve()
        self.version = version
        self.install_dir = self.root / f"neo4j-{version}"
        self.state_dir = self.root / "server"
        self.conf_dir = self.state_dir / "conf"
        self.logs_dir = self.state_dir / "logs"
        self.import_dir = self.state_dir / "import"
        self.password_file = self.state_dir / "password"
        self.state_file = self.state_dir / "state.json"

    # -- install ---------------------------------------------------------------
    @property
    def lib_dir(self) -> Path:
        external = os.environ.get("NEO4J_HOME")
        if external:
            return Path(external).expanduser() / "lib"
        return self.install_dir / "lib"

    def installed_version(self) -> str | None:
        """The Neo4j version of the jars in :attr:`lib_dir`, or None when not installed."""
        if not self.lib_dir.is_dir():
            return None
        for jar in self.lib_dir.glob("neo4j-kernel-*.jar"):
            m = re.match(r"neo4j-kernel-(\d+\.\d+\.\d+)\.jar$", jar.name)
            if m:
                return m.group(1)
        return None

    def install(self, force: bool = False) -> dict[str, object]:
        """Copy the jars of Neo4j Community ``version`` from Maven Central into ``lib/``.

        Returns ``{"version", "lib", "jars", "seconds", "source"}``. Idempotent: an
        existing install is kept unless ``force``.
        """
        if os.environ.get("NEO4J_HOME"):
            version = self.installed_version()
            if version is None:
                raise RuntimeSetupError(
                    f"NEO4J_HOME={os.environ['NEO4J_HOME']} has no lib/neo4j-kernel-*.jar; "
                    "point it at an unpacked Neo4j Community tarball or unset it."
                )
            return {"version": version, "lib": str(self.lib_dir), "jars": len(list(self.lib_dir.glob("*.jar"))),
                    "seconds": 0.0, "source": "NEO4J_HOME"}
        lib = self.install_dir / "lib"
        if lib.is_dir() and self.installed_version() == self.version and not force:
            return {"version": self.version, "lib": str(lib), "jars": len(list(lib.glob("*.jar"))),
                    "seconds": 0.0, "source": "existing"}
        mvn = find_executable("mvn")
        find_executable("java", "JAVA_HOME")
        started = time.monotonic()
        self.install_dir.mkdir(parents=True, exist_ok=True)
        pom = self.install_dir / "pom.xml"
        pom.write_bytes(resources.files("patentminer.cypher").joinpath("neo4j-runtime/pom.xml").read_bytes())
        tmp = self.install_dir / "lib.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        source = "org.neo4j.assembly:neo4j-community-standalone"
        log = self.install_dir / "install.log"
        ok = self._mvn_copy(mvn, pom, tmp, "assembly", log)
        if not ok:
            shutil.rmtree(tmp, ignore_errors=True)
            source = "modules (org.neo4j:neo4j, neo4j-server, neo4j-import-tool, neo4j-bolt)"
            ok = self._mvn_copy(mvn, pom, tmp, "modules", log)
        if not ok:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeSetupError(
                f"Maven could not resolve Neo4j {self.version} (see {log}): {' '.join(tail)[:300]}"
            )
        shutil.rmtree(lib, ignore_errors=True)
        tmp.rename(lib)
        jars = sorted(p.name for p in lib.glob("*.jar"))
        info = {"version": self.version, "lib": str(lib), "jars": len(jars),
                "seconds": round(time.monotonic() - started, 1), "source": source}
        (self.install_dir / "installed.json").write_text(json.dumps({**info, "jar_names": jars}, indent=2))
        return info

    def _mvn_copy(self, mvn: str, pom: Path, out: Path, profile: str, log: Path) -> bool:
        cmd = [mvn, "-B", "-q", "-f", str(pom), f"-P{profile}", f"-Dneo4j.version={self.version}",
               "dependency:copy-dependencies", f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=self.install_dir).returncode
        return rc == 0 and any(out.glob("neo4j-kernel-*.jar"))

    def require_installed(self) -> str:
        version = self.installed_version()
        if version is None:
            raise RuntimeSetupError(
                f"Neo4j is not installed in {self.lib_dir}; run `patentminer neo4j install` (or `make install`)."
            )
        return version

    # -- state -----------------------------------------------------------------
    def _state(self) -> dict[str, object]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, **values: object) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self._state(), **values}, indent=2))
        tmp.replace(self.state_file)

    def _own_pid(self) -> int | None:
        """The pid of this runtime's server if it is alive and really ours."""
        pid = self._state().get("pid")
        if not isinstance(pid, int):
            return None
        cmdline = _process_cmdline(pid)
        # A recycled pid belongs to someone else: only a JVM started on our home dir is ours.
        if SERVER_MAIN in cmdline and f"--home-dir={self.state_dir}" in cmdline:
            return pid
        return None

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError as e:
            raise RuntimeSetupError(
                f"No password file at {self.password_file}; start the server once with `patentminer neo4j start`."
            ) from e

    def status(self) -> ServerStatus:
        pid = self._own_pid()
        port = self._state().get("bolt_port")
        state = self._state()
        return ServerStatus(
            running=pid is not None,
            uri=f"bolt://127.0.0.1:{port}" if pid is not None and port else None,
            user=NEO4J_USER,
            password_file=str(self.password_file),
            home=str(self.state_dir),
            version=self.installed_version(),
            pid=pid,
            heap=str(state["heap"]) if pid is not None and state.get("heap") else None,
            pagecache=str(state["pagecache"]) if pid is not None and state.get("pagecache") else None,
        )

    # -- admin -------------------------------------------------------------------
    def admin_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["NEO4J_HOME"] = str(self.state_dir)
        env["NEO4J_CONF"] = str(self.conf_dir)
        return env

    def admin_command(self, *args: str) -> list[str]:
        """The ``neo4j-admin ARGS`` command line on this runtime's classpath."""
        java = find_executable("java", "JAVA_HOME")
        return [java, "-Xmx256m", "-cp", f"{self.lib_dir}/*", ADMIN_MAIN, *args]

    def admin(self, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``neo4j-admin ARGS`` against this runtime's state directory."""
        self.require_installed()
        state = self._state()
        self._write_conf(int(state.get("bolt_port", 0) or 0),  # type: ignore[call-overload]
                         str(state.get("heap") or "1g"), str(state.get("pagecache") or "512m"))
        return subprocess.run(self.admin_command(*args), env=self.admin_env(), cwd=self.state_dir,
                              capture_output=True, text=True)

    # -- start / stop ------------------------------------------------------------
    def _write_conf(self, bolt_port: int, heap: str = "1g", pagecache: str = "512m") -> None:
        """neo4j.conf for this start. The heap written here is the -Xmx the JVM is started with: one value."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Written by patentminer at every start; edit neo4j-extra.conf for your own settings.",
            "server.default_listen_address=127.0.0.1",
            "server.default_advertised_address=127.0.0.1",
            f"server.bolt.listen_address=127.0.0.1:{bolt_port}",
            f"server.bolt.advertised_address=127.0.0.1:{bolt_port}",
            "server.http.enabled=false",
            "server.https.enabled=false",
            "dbms.security.auth_enabled=true",
            "dbms.usage_report.enabled=false",
            f"server.memory.pagecache.size={pagecache}",
            f"server.memory.heap.initial_size={heap}",
            f"server.memory.heap.max_size={heap}",
            "server.directories.logs=logs",
            "server.directories.import=import",
            "db.tx_log.rotation.retention_policy=2 files",
        ]
        extra = self.conf_dir / "neo4j-extra.conf"
        if extra.exists():
            text = extra.read_text()
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip().startswith(_OWNED):
                    raise RuntimeSetupError(
                        f"{extra}:{number}: {line.split('=')[0].strip()} is set by patentminer; remove the line and "
                        "use `patentminer neo4j start --heap/--pagecache` (or PATENTMINER_NEO4J_HEAP/_PAGECACHE).")
            lines.append(text)
        (self.conf_dir / "neo4j.conf").write_text("\n".join(lines) + "\n")

    def _ensure_password(self) -> None:
        if self.password_file.exists():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        password = new_password()
        proc = self.admin("dbms", "set-initial-password", password)
        if proc.returncode != 0:
            raise RuntimeSetupError(f"neo4j-admin could not set the initial password: {proc.stderr.strip()[-300:]}")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")

    def store_bytes(self) -> int:
        """Bytes of the store files (every database and its transaction logs) under ``data/``."""
        data = self.state_dir / "data"
        return sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) if data.exists() else 0

    def recommend_memory(self, total: int | None = None) -> tuple[str, str]:
        """(heap, page cache) for this machine and store, for a start that is given no sizes.

        ``neo4j-admin server memory-recommendation`` is asked for :data:`NEO4J_MEMORY_SHARE` of the
        machine's memory (``total`` bytes, default: all of it); the page cache is then capped at the store
        size plus a fifth (room to grow while a run writes), since cache beyond the store is never used.
        When the store is larger than that cache, Neo4j gets :data:`NEO4J_LARGE_STORE_SHARE` of the memory
        with at most a :data:`NEO4J_LARGE_STORE_HEAP` heap, the rest as page cache (still capped by the store).
        """
        total = total or psutil.virtual_memory().total
        budget = int(total * NEO4J_MEMORY_SHARE)
        proc = self.admin("server", "memory-recommendation", f"--memory={format_size(budget)}")
        found = dict(re.findall(r"^(server\.memory\.heap\.max_size|server\.memory\.pagecache\.size)=(\S+)$",
                                proc.stdout, flags=re.M))
        if proc.returncode != 0 or len(found) != 2:
            raise RuntimeSetupError("neo4j-admin server memory-recommendation failed: "
                                    f"{(proc.stderr or proc.stdout).strip()[-300:]}; give --heap and --pagecache.")
        heap = found["server.memory.heap.max_size"]
        cache = parse_size(found["server.memory.pagecache.size"])
        wanted = max(256 << 20, int(self.store_bytes() * 1.2))
        if wanted > cache:
            # The store does not fit: trade heap for page cache and give Neo4j a larger share.
            heap_bytes = min(parse_size(heap), NEO4J_LARGE_STORE_HEAP)
            heap = format_size(heap_bytes)
            cache = max(cache, int(total * NEO4J_LARGE_STORE_SHARE) - heap_bytes)
        return heap, format_size(min(cache, wanted))

    def start(self, bolt_port: int = 0, heap: str | None = None, pagecache: str | None = None,
              timeout: float = 180.0) -> tuple[ServerStatus, bool]:
        """Start the server (or find it running); wait until Bolt accepts our password.

        Returns ``(status, started)`` where ``started`` is False when it was already running.
        """
        version = self.require_installed()
        current = self.status()
        if current.running:
            return current, False
        java = find_executable("java", "JAVA_HOME")
        # Sizes given at the last start are kept across restarts (an import restarts the server); sizes
        # chosen automatically are chosen again, since the store may have grown since.
        last = self._state()
        kept = last.get("sized") == "given"
        heap = heap or os.environ.get("PATENTMINER_NEO4J_HEAP") or (str(last["heap"]) if kept else None)
        pagecache = (pagecache or os.environ.get("PATENTMINER_NEO4J_PAGECACHE")
                     or (str(last["pagecache"]) if kept else None))
        for value, flag in ((heap, "--heap"), (pagecache, "--pagecache")):
            if value is not None and not re.fullmatch(r"\d+[kmgKMG]", value):
                raise RuntimeSetupError(f"{flag} {value!r} is not a size; use a number with k, m or g, like 2g.")
        sized = "given" if heap and pagecache else "auto"
        if heap is None or pagecache is None:
            auto_heap, auto_cache = self.recommend_memory()
            heap, pagecache = heap or auto_heap, pagecache or auto_cache
        if bolt_port:
            if port_in_use(bolt_port):
                raise RuntimeSetupError(
                    f"Port {bolt_port} on 127.0.0.1 is already in use; choose another --bolt-port "
                    "or leave it out to use a free one."
                )
            port = bolt_port
        else:
            previous = self._state().get("bolt_port")
            port = previous if isinstance(previous, int) and not port_in_use(previous) else free_port()
        self._write_state(bolt_port=port, version=version, pid=None)
        self._ensure_password()
        self._write_conf(port, heap, pagecache)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.import_dir.mkdir(parents=True, exist_ok=True)
        console = self.logs_dir / "console.log"
        cmd = [java, f"-Xms{heap}", f"-Xmx{heap}", *_JVM_FLAGS, "-cp", f"{self.lib_dir}/*", SERVER_MAIN,
               f"--home-dir={self.state_dir}", f"--config-dir={self.conf_dir}"]
        with console.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.state_dir, start_new_session=True)
        self._write_state(pid=proc.pid, started_at=time.time(), heap=heap, pagecache=pagecache, sized=sized)
        self._wait_for_bolt(proc, port, timeout)
        return self.status(), True

    def _wait_for_bolt(self, proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
        from neo4j import GraphDatabase
        from neo4j.exceptions import AuthError, ServiceUnavailable

        deadline = time.monotonic() + timeout
        uri = f"bolt://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeSetupError(f"Neo4j exited during start (code {proc.returncode}): {self._log_tail()}")
            try:
                with GraphDatabase.driver(uri, auth=(NEO4J_USER, self.password())) as driver:
                    driver.verify_connectivity()
                return
            except (ServiceUnavailable, OSError):
                time.sleep(0.5)
            except AuthError as e:
                raise RuntimeSetupError(
                    f"Neo4j at {uri} refused the stored password in {self.password_file}; the data directory "
                    f"belongs to another setup: stop the server and remove {self.state_dir} to start fresh."
                ) from e
        self.stop()
        raise RuntimeSetupError(f"Neo4j did not answer on {uri} within {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        for name in ("neo4j.log", "console.log"):
            path = self.logs_dir / name
            if path.exists():
                lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
                errors = [ln for ln in lines if "ERROR" in ln or "Exception" in ln]
                return (errors or lines or [""])[-1][:300] + f" (see {path})"
        return f"no log in {self.logs_dir}"

    def stop(self, timeout: float = 600.0) -> bool:
        """Shut the server down cleanly (SIGTERM, then SIGKILL after ``timeout``: a full-size store's
        checkpoint on shutdown takes minutes, and a killed server must recover its store on the next start).

        Returns False when it was not running. Only the JVM this runtime started is signalled.
        """
        pid = self._own_pid()
        if pid is None:
            return False
        proc = psutil.Process(pid)
        proc.terminate()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._own_pid() is None or _is_zombie(pid):
                break
            time.sleep(0.2)
        else:
            proc.kill()
        _reap(pid)
        self._write_state(pid=None)
        return True


def _is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
