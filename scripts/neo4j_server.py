"""A real Neo4j 5 Community server for kgmm's test suite, built from Maven Central artifacts.

No Docker and no Neo4j distribution download: ``scripts/neo4j/pom.xml`` pulls
``org.neo4j:neo4j`` (the embedded Community edition) from Maven Central, and
``scripts/neo4j/src/main/java/kgmm/Neo4jTestServer.java`` starts it with the Bolt connector
on 127.0.0.1, authentication enabled and the ``neo4j`` user's password preset.

Python API (stdlib + the official ``neo4j`` driver only)::

    from neo4j_server import Neo4jTestServer          # scripts/ on sys.path, or load by path

    with Neo4jTestServer() as server:                  # free loopback port, temp home
        driver = neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password))
        ...
        server.restart()                               # same port and home: data is kept

CLI::

    python scripts/neo4j_server.py build                       # resolve + compile only
    python scripts/neo4j_server.py start [--port N] [--home DIR] [--password PW]

Requirements: a JDK 17+ (``java``/``javac`` on PATH or under ``$JAVA_HOME``) and Maven
(``mvn`` on PATH, or ``$KGMM_MVN``) that can reach Maven Central (or has ~/.m2 filled).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import TextIO

__all__ = [
    "DEFAULT_JVM_OPTS",
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "READY_PREFIX",
    "Neo4jSettings",
    "Neo4jTestServer",
    "build_classpath",
    "find_java",
    "main",
]

SCRIPTS_DIR = Path(__file__).resolve().parent
NEO4J_DIR = SCRIPTS_DIR / "neo4j"
POM = NEO4J_DIR / "pom.xml"
JAVA_SRC = NEO4J_DIR / "src" / "main" / "java" / "kgmm" / "Neo4jTestServer.java"
TARGET_DIR = NEO4J_DIR / "target"  # git-ignored
CLASSES_DIR = TARGET_DIR / "classes"
DEPS_FILE = TARGET_DIR / "classpath.txt"
KEY_FILE = TARGET_DIR / "build.key"
LOCK_FILE = TARGET_DIR / ".build.lock"
MAIN_CLASS = "kgmm.Neo4jTestServer"

DEFAULT_USER = "neo4j"
DEFAULT_PASSWORD = "kgmm-test-password"
READY_PREFIX = "KGMM_NEO4J_READY "
#: Small heap; serial GC + C1-only JIT start fastest on a 2-core box (~9 s to ready vs ~14 s
#: with the JVM defaults, measured with Neo4j 5.26.0 on JDK 17). Override per server if a test
#: needs peak query throughput rather than a fast start.
DEFAULT_JVM_OPTS: tuple[str, ...] = (
    "-Xmx768m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Dfile.encoding=UTF-8",
)
_TAIL_LINES = 40


@dataclasses.dataclass(frozen=True)
class Neo4jSettings:
    """How to reach a Neo4j server: a Bolt URI and basic-auth credentials."""

    uri: str
    user: str
    password: str


# --------------------------------------------------------------------------- build


def _tool(name: str, env_var: str | None = None) -> str:
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    java_home = os.environ.get("JAVA_HOME")
    if name in ("java", "javac") and java_home:
        candidate = Path(java_home) / "bin" / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name!r} not found on PATH; a JDK 17+ and Maven are required")
    return found


def find_java() -> str:
    """The ``java`` launcher that servers are started with (``$JAVA_HOME/bin/java`` or PATH)."""
    return _tool("java")


def _build_key() -> str:
    h = hashlib.sha256()
    for path in (POM, JAVA_SRC):
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _cached_classpath(key: str) -> str | None:
    """The cached classpath when the build for ``key`` is complete and its jars still exist."""
    try:
        if KEY_FILE.read_text().strip() != key:
            return None
        deps = DEPS_FILE.read_text().strip()
    except OSError:
        return None
    if not (CLASSES_DIR / "kgmm" / "Neo4jTestServer.class").is_file():
        return None
    entries = [e for e in deps.split(os.pathsep) if e]
    if not entries or not all(os.path.exists(e) for e in entries):
        return None  # e.g. ~/.m2 was wiped
    return os.pathsep.join([str(CLASSES_DIR), *entries])


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(
        cmd, cwd=NEO4J_DIR, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().splitlines()
        tail = "\n".join(out[-_TAIL_LINES:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def build_classpath(*, force: bool = False) -> str:
    """Resolve the Neo4j jars with Maven and compile the launcher class; return the classpath.

    Cached under ``scripts/neo4j/target/``: the work is only redone when the pom or the Java
    source changed (key = sha256 of both), when the output is missing, or when ``force``.
    Safe to call from several processes at once (a file lock serialises builds).
    """
    TARGET_DIR.mkdir(parents=True, exist_ok=True)
    key = _build_key()
    if not force and (cp := _cached_classpath(key)):
        return cp
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not force and (cp := _cached_classpath(key)):
                return cp  # another process built it while we waited
            with contextlib.suppress(FileNotFoundError):
                KEY_FILE.unlink()
            deps_tmp = TARGET_DIR / "classpath.txt.tmp"
            _run(
                [
                    _tool("mvn", "KGMM_MVN"),
                    "-B",
                    "-q",
                    "-f",
                    str(POM),
                    "dependency:build-classpath",
                    f"-Dmdep.outputFile={deps_tmp}",
                ],
                "maven dependency resolution",
            )
            deps = deps_tmp.read_text().strip()
            shutil.rmtree(CLASSES_DIR, ignore_errors=True)
            CLASSES_DIR.mkdir(parents=True)
            _run(
                [
                    _tool("javac"),
                    "--release",
                    "17",
                    "-encoding",
                    "UTF-8",
                    "-d",
                    str(CLASSES_DIR),
                    "-cp",
                    deps,
                    str(JAVA_SRC),
                ],
                "javac",
            )
            os.replace(deps_tmp, DEPS_FILE)
            KEY_FILE.write_text(key + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    cp = _cached_classpath(key)
    if cp is None:
        raise RuntimeError(f"build finished but {TARGET_DIR} is incomplete")
    return cp


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _classpath_argfile(classpath: str) -> Path:
    """A java @argfile holding ``-cp CLASSPATH`` (keeps the ~30 kB classpath out of ``ps``)."""
    quoted = classpath.replace("\\", "\\\\").replace('"', '\\"')
    content = f'-cp "{quoted}"\n'
    argfile = TARGET_DIR / "java-classpath.args"
    with contextlib.suppress(OSError):
        if argfile.read_text() == content:
            return argfile
    tmp = argfile.with_name(f"{argfile.name}.{os.getpid()}.tmp")
    tmp.write_text(content)
    os.replace(tmp, argfile)
    return argfile


_LIVE: weakref.WeakSet[Neo4jTestServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


class Neo4jTestServer:
    """A Neo4j 5 Community server in a child JVM, for tests. Use as a context manager.

    ``port``/``home`` default to a free 127.0.0.1 port and a fresh temp directory (removed by
    :meth:`stop`). A given ``home`` is never removed. ``restart()`` keeps port, home and data.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        home: str | os.PathLike[str] | None = None,
        password: str = DEFAULT_PASSWORD,
        startup_timeout: float = 180.0,
        jvm_opts: tuple[str, ...] | list[str] = DEFAULT_JVM_OPTS,
        echo: TextIO | None = None,
    ) -> None:
        self.port: int | None = port
        self.home: Path | None = Path(home).resolve() if home is not None else None
        self.user: str = DEFAULT_USER
        self.password: str = password
        self.startup_timeout = startup_timeout
        self.jvm_opts = tuple(jvm_opts)
        self.echo = echo  # if set, every server output line is also written here
        self._port_given = port is not None
        self._owns_home = False
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._lines: collections.deque[str] = collections.deque(maxlen=400)
        self._lock = threading.Lock()
        self.startup_seconds: float | None = None  # wall time of the last successful start

    # ---- properties

    @property
    def uri(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Neo4jSettings:
        return Neo4jSettings(self.uri, self.user, self.password)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output_tail(self, n: int = _TAIL_LINES) -> str:
        with self._lock:
            lines = list(self._lines)[-n:]
        return "\n".join(lines)

    # ---- lifecycle

    def __enter__(self) -> Neo4jTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Neo4jTestServer:
        """Start the server and block until a driver can connect; raise RuntimeError if not."""
        if self.is_running():
            return self
        classpath = build_classpath()
        created_home = self.home is None
        if created_home:
            self.home = Path(tempfile.mkdtemp(prefix="kgmm-neo4j-"))
            self._owns_home = True
        attempts = 1 if self._port_given else 3
        for attempt in range(1, attempts + 1):
            if not self._port_given:
                self.port = _free_port()
            try:
                self._start_once(classpath)
                _LIVE.add(self)
                return self
            except BaseException as exc:
                port_race = "already in use" in str(exc).lower() or "BindException" in str(exc)
                if attempt < attempts and port_race and isinstance(exc, RuntimeError):
                    continue  # someone grabbed the free port between our probe and the bind
                if created_home and self.home is not None:
                    shutil.rmtree(self.home, ignore_errors=True)
                    self.home, self._owns_home = None, False
                raise
        raise AssertionError("unreachable")

    def _start_once(self, classpath: str) -> None:
        assert self.home is not None and self.port is not None
        self.home.mkdir(parents=True, exist_ok=True)
        argfile = _classpath_argfile(classpath)
        cmd = [
            find_java(),
            *self.jvm_opts,
            f"@{argfile}",
            MAIN_CLASS,
            "--home",
            str(self.home),
            "--port",
            str(self.port),
            "--password",
            self.password,
            "--exit-on-stdin-eof",
        ]
        with self._lock:
            self._lines.clear()
        self._ready.clear()
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.home,
            stdin=subprocess.PIPE,  # closed by us (or our death) => the JVM exits
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # a terminal Ctrl-C reaches us, not the JVM directly
        )
        self._reader = threading.Thread(
            target=self._pump, args=(self._proc,), name=f"neo4j-{self.port}-out", daemon=True
        )
        self._reader.start()
        try:
            while not self._ready.wait(0.2):
                if self._proc.poll() is not None:
                    self._reader.join(5)
                    raise RuntimeError(
                        f"Neo4j test server exited with code {self._proc.returncode} before "
                        f"it was ready (port {self.port}, home {self.home}). Last output:\n"
                        f"{self.output_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Neo4j test server not ready after {self.startup_timeout:.0f} s "
                        f"(port {self.port}, home {self.home}). Last output:\n"
                        f"{self.output_tail()}"
                    )
            self._verify(deadline)
        except BaseException:
            self._terminate()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\r\n")
            with self._lock:
                self._lines.append(line)
            if self.echo is not None:
                with contextlib.suppress(Exception):
                    self.echo.write(line + "\n")
                    self.echo.flush()
            if line.startswith(READY_PREFIX):
                self._ready.set()

    def _verify(self, deadline: float) -> None:
        import neo4j  # imported lazily: `build` needs no driver

        last: Exception | None = None
        while True:
            try:
                with neo4j.GraphDatabase.driver(
                    self.uri, auth=(self.user, self.password), connection_timeout=10
                ) as driver:
                    driver.verify_connectivity()
                return
            except Exception as exc:
                last = exc
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(
                    f"Neo4j test server died during the connectivity check: {last!r}. "
                    f"Last output:\n{self.output_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Neo4j test server printed READY but a driver cannot connect to {self.uri} "
                    f"as {self.user!r}: {last!r}. Last output:\n{self.output_tail()}"
                )
            time.sleep(0.5)

    def _terminate(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(10)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server (SIGKILL after ``timeout``) and remove the temp home we made."""
        self._terminate(timeout)
        _LIVE.discard(self)
        if self._owns_home and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home, self._owns_home = None, False
            if not self._port_given:
                self.port = None

    def restart(self, timeout: float = 30.0) -> Neo4jTestServer:
        """Stop and start again on the same port and home, keeping the data."""
        if self.home is None or self.port is None:
            return self.start()
        self._terminate(timeout)
        port_given = self._port_given
        self._port_given = True  # same port, no re-pick
        try:
            return self.start()
        finally:
            self._port_given = port_given


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="neo4j_server.py", description="kgmm's Neo4j 5 Community test server"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="resolve the Maven classpath and compile the launcher")
    p_start = sub.add_parser("start", help="run a server in the foreground until SIGTERM/Ctrl-C")
    p_start.add_argument("--port", type=int, default=None, help="default: a free port")
    p_start.add_argument("--home", default=None, help="default: a temp dir, removed on exit")
    p_start.add_argument("--password", default=DEFAULT_PASSWORD)
    p_start.add_argument("--timeout", type=float, default=180.0, help="startup timeout (s)")
    p_start.add_argument("--quiet", action="store_true", help="do not echo the server output")
    args = parser.parse_args(argv)

    if args.command == "build":
        t0 = time.monotonic()
        cp = build_classpath()
        n = len(cp.split(os.pathsep))
        print(f"classpath ready: {n} entries ({time.monotonic() - t0:.1f} s)")
        return 0

    def _on_sigterm(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwind through server.stop() like Ctrl-C does

    signal.signal(signal.SIGTERM, _on_sigterm)
    server = Neo4jTestServer(
        port=args.port,
        home=args.home,
        password=args.password,
        startup_timeout=args.timeout,
        echo=None if args.quiet else sys.stderr,
    )
    try:
        server.start()
        print(f"KGMM_NEO4J_URI={server.uri}", flush=True)
        print(f"KGMM_NEO4J_USER={server.user}", flush=True)
        print(f"KGMM_NEO4J_PASSWORD={server.password}", flush=True)
        while server.is_running():
            time.sleep(1.0)
        print("error: the Neo4j server exited unexpectedly", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
