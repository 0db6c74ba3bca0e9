"""A compose file's services run as processes on test hosts (network namespaces on one bridge,
``tests/support/hosts.py``), without Docker: the compose file stays the single source of truth
for what runs where.

How a service runs (what is honoured and ignored is listed in ``tests/support/compose_file.py``):

- Every service that owns a network gets a namespace and an address (``198.18.0.2``, ``.3``, …
  in file order); ``network_mode: "service:X"`` runs in X's namespace, ``none`` in one with only
  ``lo``. Service names and aliases resolve in every namespace (``/etc/hosts``).
- Its ``command`` runs as written — ``ip netns exec <ns> <command>`` — except for volume paths,
  with ``.venv/bin`` first on ``PATH`` (so ``interlock``, ``python`` and ``envoy`` are the
  project's), in its own process group, stdout and stderr appended to one log per service. The
  environment is the compose ``environment`` over a minimal one (``PATH``, ``HOME``, ``LANG``,
  ``TMPDIR``): nothing of the test's own environment leaks in. ``HOME``, ``TMPDIR`` and the
  working directory are a directory private to the service (its container filesystem's place).
- Volumes: a named volume is a directory of this run, an anonymous one a directory of the
  service, a bind mount the host path itself. A mount's target path is replaced by that
  directory wherever it begins a command argument or an environment value, follows ``=``
  (``--db=/data/x``) or follows ``:///`` (``sqlite:////data/x``); nothing else is rewritten,
  and a program that builds a volume path itself will not find it. ``:ro`` is enforced: the
  command starts in a private mount namespace (``ip netns exec`` makes one) where the
  directory is bind-mounted read-only over itself; that mount dies with the process. There is
  no other filesystem isolation: every service sees the machine's files (and root's rights).
- ``ports:`` are not published: reach a service at ``address(service)`` or, better, run the
  client inside a namespace (``run``/``popen``) so its traffic stays off the bridge.
- ``depends_on`` orders the starts; ``service_completed_successfully`` waits for the dependency
  to exit 0, ``service_healthy`` for its healthcheck command to exit 0 (run in its namespace).
  A service that exits 0 is *completed*, not failed.
- When a service's main process exits, whatever else is left in its process group is
  SIGKILLed (a container dies with its PID 1). ``restart: on-failure`` restarts it after a
  non-zero exit, ``always``/``unless-stopped`` after any exit, at most ``on-failure:N`` or
  ``max_restarts`` times, with a backoff of 0.25 s doubling to 2 s. A service stopped or killed
  through this API is not restarted until ``start``.

Everything is undone by ``close`` (or leaving the ``with`` block), even after a failure or a
KeyboardInterrupt: services and one-off commands are killed by their process groups (and
anything left inside the run's namespaces), namespaces, veths and the bridge deleted, the run's
directory (volumes, private directories) removed. Logs are copied to ``logs_to`` first.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tests.support.compose_file import (
    REPO,
    ComposeError,
    ComposeProject,
    Mount,
    Service,
    rewrite_paths,
)
from tests.support.hosts import Host, HostNetwork

VENV_BIN = REPO / ".venv" / "bin"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUPERVISOR_PERIOD = 0.05
SUPERVISOR_LIFETIME = 3600.0
"""The supervisor thread never outlives this, whatever the test does."""
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 2.0


class ServiceFailed(AssertionError):
    """A service did not reach the state the caller waited for (the message has its log)."""


@dataclass
class ServiceState:
    """What the harness knows about one service's process."""

    spec: Service
    log_path: Path
    private_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    held: bool = False
    """Stopped or killed through the API: no restart policy applies until ``start``."""
    restart_at: float | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None

    @property
    def completed(self) -> bool:
        """Exited 0 (a one-shot service that did its job) and not running again."""
        return self.proc is None and bool(self.exit_codes) and self.exit_codes[-1] == 0


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed orphan stays one until
    its new parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` exited, without reaping it: while it is an unreaped zombie its pid,
    and so its process group id, cannot be reused by an unrelated process."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes in process group ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    pids.append(int(entry.name))
    return sorted(pids)


def _kill_group_and_reap(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGKILL ``proc``'s whole process group (it leads one), reap it, and wait (up to
    ``timeout``) until no process of the group is left alive; its exit code."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return code


class ComposeHosts:
    """A compose project's services running on test hosts. Use as a context manager:
    ``__enter__`` makes the hosts (bridge, namespaces, hosts files, volume directories) and
    starts nothing; ``up`` starts the services; ``close`` removes everything."""

    def __init__(
        self,
        project: ComposeProject,
        *,
        logs_to: Path | None = None,
        venv_bin: Path = VENV_BIN,
        max_restarts: int = 5,
    ) -> None:
        self.project = project
        self.logs_to = logs_to
        self.venv_bin = venv_bin
        self.max_restarts = max_restarts
        self.network = HostNetwork()
        self.run_dir = Path(tempfile.gettempdir()) / f"{self.network.prefix}-run"
        """This run's directory (volumes, private directories, logs); made on ``__enter__``."""
        self._run_dir_made = False
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._oneoffs: list[subprocess.Popen[str]] = []
        self._netns: dict[str, str] = {}
        self._volumes: dict[str, Path] = {}
        self.services: dict[str, ServiceState] = {}

    # -- setting up and tearing down -------------------------------------------------------

    def __enter__(self) -> ComposeHosts:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.network.prefix}-"))
        self._run_dir_made = True
        for name in self.project.volumes:
            self._volumes[name] = self._mkdir(self.run_dir / "volumes" / name)
        (self.run_dir / "logs").mkdir()
        self.network.create_bridge()
        for name, svc in self.project.services.items():
            if svc.network_mode is None:
                self._netns[name] = self.network.add_host(name, svc.aliases).netns
            elif svc.network_mode == "none":
                self._netns[name] = self.network.add_isolated(name)
        for name, svc in self.project.services.items():
            owner = svc.network_owner
            if owner is not None and owner != name:
                self._netns[name] = self._netns[owner]
            private = self._mkdir(self.run_dir / "services" / name)
            self._mkdir(private / "tmp")
            self.services[name] = ServiceState(svc, self.run_dir / "logs" / f"{name}.log", private)
        self.network.write_hosts_files()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, mode=0o755)
        return path

    def close(self) -> None:
        """Kill everything this run started and remove everything it made. Safe to call twice."""
        self._closing.set()
        errors: list[BaseException] = []
        try:
            if self._supervisor is not None:
                self._supervisor.join(10)
            with self._lock:
                running = [s for s in self.services.values() if s.proc is not None]
                for state in running:  # a short grace period, all at once
                    assert state.proc is not None
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(state.proc.pid, state.spec.stop_signal)
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline and not all(
                    s.proc is None or _exited(s.proc) for s in running
                ):
                    time.sleep(0.05)
                for state in running:
                    self._reap(state, "stopped (harness closing)")
                for proc in self._oneoffs:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        _kill_group_and_reap_text(proc)
                self._oneoffs.clear()
        except BaseException as exc:
            errors.append(exc)
        try:
            self.network.close()
        except BaseException as exc:
            errors.append(exc)
        try:
            if self.logs_to is not None and (self.run_dir / "logs").is_dir():
                self.logs_to.mkdir(parents=True, exist_ok=True)
                for log in (self.run_dir / "logs").iterdir():
                    shutil.copyfile(log, self.logs_to / log.name)
        except OSError as exc:
            errors.append(exc)
        if self._run_dir_made:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self._run_dir_made = False
        if errors:
            raise errors[0]

    # -- the compose file's view ------------------------------------------------------------

    def service(self, name: str) -> Service:
        """The compose service ``name`` (KeyError when there is none)."""
        return self.project.services[name]

    def host(self, name: str) -> Host:
        """The test host (namespace on the bridge) that service ``name`` runs on."""
        owner = self.service(name).network_owner
        if owner is None or owner not in self.network.hosts:
            raise ComposeError(f"{name} is on no network (network_mode: none)")
        return self.network.hosts[owner]

    def address(self, name: str) -> str:
        """Service ``name``'s address on the bridge (that of the service whose network it
        shares)."""
        return self.host(name).address

    def netns(self, name: str) -> str:
        """The network namespace service ``name`` runs in."""
        return self._netns[name]

    def volume(self, name: str) -> Path:
        """The directory standing for named volume ``name``."""
        return self._volumes[name]

    def private_dir(self, name: str) -> Path:
        """Service ``name``'s own directory (its ``HOME``, ``TMPDIR`` and working directory)."""
        return self.services[name].private_dir

    def mount_dirs(self, name: str) -> dict[str, Path]:
        """Service ``name``'s mount targets and the directories standing for them.

        A directory above mount targets (``/creds`` for ``/creds/a`` and ``/creds/b``) stands
        for a directory of the service's own holding a link to each of them, so that a command
        naming the parent (``--out /creds``) writes into the volumes, as in a container, and
        never into the test machine's own ``/creds``."""
        out: dict[str, Path] = {}
        state = self.services[name]
        for i, mount in enumerate(state.spec.mounts):
            out[mount.target] = self._mount_source(mount, state, i)
        mounted = dict(out)
        for target, source in mounted.items():
            child = PurePosixPath(target)
            for parent in child.parents:
                if str(parent) == "/" or str(parent) in mounted:
                    break
                stand_in = state.private_dir / "parents" / str(parent).lstrip("/")
                link = stand_in / child.name
                stand_in.mkdir(parents=True, exist_ok=True)
                if not link.exists() and not link.is_symlink():
                    link.symlink_to(source)
                child = parent
            for parent in PurePosixPath(target).parents:
                if str(parent) == "/" or str(parent) in mounted:
                    break
                out[str(parent)] = state.private_dir / "parents" / str(parent).lstrip("/")
        return out

    def _mount_source(self, mount: Mount, state: ServiceState, index: int) -> Path:
        if mount.kind == "volume":
            return self._volumes[mount.source]
        if mount.kind == "bind":
            return Path(mount.source)
        path = state.private_dir / "anonymous" / str(index)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def rewrite(self, name: str, value: str) -> str:
        """``value`` with service ``name``'s mount targets replaced by their directories
        (``rewrite_paths``)."""
        return rewrite_paths(value, self.mount_dirs(name))

    def _environment(self, name: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        state = self.services[name]
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(state.private_dir),
            "TMPDIR": str(state.private_dir / "tmp"),
            "LANG": "C.UTF-8",
        }
        env.update({k: self.rewrite(name, v) for k, v in state.spec.environment.items()})
        env.update(extra or {})
        env["PATH"] = f"{self.venv_bin}:{env['PATH']}"
        return env

    def _argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` (volume paths rewritten) inside service ``name``'s namespace, behind the
        read-only bind mounts of its ``:ro`` volumes."""
        state = self.services[name]
        command = [self.rewrite(name, a) for a in argv]
        read_only = [
            str(self._mount_source(m, state, i))
            for i, m in enumerate(state.spec.mounts)
            if m.read_only
        ]
        if read_only:
            remounts = "".join(
                f"mount --bind {q} {q} && mount -o remount,bind,ro {q} && "
                for q in map(shlex.quote, read_only)
            )
            command = ["/bin/sh", "-c", remounts + 'exec "$@"', "sh", *command]
        return ["ip", "netns", "exec", self._netns[name], *command]

    def _cwd(self, name: str) -> Path:
        state = self.services[name]
        if state.spec.working_dir is None:
            return state.private_dir
        cwd = Path(self.rewrite(name, state.spec.working_dir))
        if not cwd.is_relative_to(self.run_dir) and not any(
            cwd.is_relative_to(p) for p in self.mount_dirs(name).values()
        ):
            raise ComposeError(f"{name}: working_dir {state.spec.working_dir} is not in a volume")
        return cwd

    # -- starting, stopping, supervising ----------------------------------------------------

    def up(self, timeout: float = 60.0) -> None:
        """Start every service in dependency order, waiting for each dependency's condition
        (bounded by ``timeout`` in all). Raises ServiceFailed naming the one that failed."""
        deadline = time.monotonic() + timeout
        for name in self.project.start_order():
            for dep, condition in self.service(name).depends_on.items():
                self._wait_condition(dep, condition, deadline, waiter=name)
            with self._lock:
                if self.services[name].proc is None:
                    self._start(name)

    def _wait_condition(self, dep: str, condition: str, deadline: float, waiter: str) -> None:
        healthcheck = self.service(dep).healthcheck
        while True:
            with self._lock:
                state = self.services[dep]
                if condition == "service_started" and state.starts:
                    return
                if condition == "service_completed_successfully" and state.completed:
                    return
                gave_up = state.proc is None and state.restart_at is None and state.exit_codes
                if gave_up and not state.completed:
                    raise ServiceFailed(
                        f"{waiter} waits for {dep} ({condition}), which exited "
                        f"{state.exit_codes[-1]}:\n{self.logs(dep)[-3000:]}"
                    )
            if condition == "service_healthy":
                if healthcheck is None:
                    raise ComposeError(f"{waiter}: {dep} has no healthcheck to wait for")
                left = max(0.5, min(5.0, deadline - time.monotonic()))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    if self.run(dep, healthcheck, timeout=left).returncode == 0:
                        return
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"{waiter} waited too long for {dep} ({condition}):\n{self.describe()}"
                )
            time.sleep(0.1)

    def _start(self, name: str) -> None:
        """Start service ``name``'s command (the caller holds the lock)."""
        state = self.services[name]
        argv = self._argv(name, state.spec.command)
        state.starts += 1
        state.restart_at = None
        with state.log_path.open("ab") as log:
            log.write(f"[harness] start {state.starts}: {shlex.join(argv)}\n".encode())
            log.flush()
            state.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self._cwd(name),
                env=self._environment(name, None),
                start_new_session=True,
            )

    def _reap(self, state: ServiceState, why: str) -> int:
        """Kill what is left of a service's process group, reap it, record how it ended (the
        caller holds the lock)."""
        assert state.proc is not None
        code = _kill_group_and_reap(state.proc)
        state.proc = None
        state.exit_codes.append(code)
        with state.log_path.open("ab") as log:
            log.write(f"[harness] {why}: exit code {code}\n".encode())
        return code

    def _supervise(self) -> None:
        end = time.monotonic() + SUPERVISOR_LIFETIME
        while not self._closing.wait(SUPERVISOR_PERIOD) and time.monotonic() < end:
            with self._lock:
                if self._closing.is_set():
                    return
                now = time.monotonic()
                for name, state in self.services.items():
                    if state.proc is not None and _exited(state.proc):
                        code = self._reap(state, "exited")
                        policy = state.spec.restart
                        limit = state.spec.max_restarts or self.max_restarts
                        again = policy in ("always", "unless-stopped") or (
                            policy == "on-failure" and code != 0
                        )
                        if again and not state.held and state.restarts < limit:
                            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**state.restarts)
                            state.restart_at = now + delay
                    if state.restart_at is not None and now >= state.restart_at:
                        state.restarts += 1
                        self._start(name)

    def start(self, name: str) -> None:
        """Start service ``name`` again with the same command (if it is not running)."""
        with self._lock:
            state = self.services[name]
            state.held = False
            state.restarts = 0
            if state.proc is None:
                self._start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to service ``name`` as ``docker kill`` would: SIGKILL kills every
        process of the service at once (a crash) and returns when none is left alive; another
        signal goes to its main process. Either way no restart policy applies until ``start``."""
        with self._lock:
            state = self.services[name]
            state.held = True
            state.restart_at = None
            if state.proc is None:
                return
            if sig == signal.SIGKILL:
                self._reap(state, "killed (SIGKILL)")
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.proc.pid, sig)

    def stop(self, name: str, timeout: float | None = None) -> int | None:
        """Stop service ``name`` as ``docker stop`` would: its ``stop_signal`` to the main
        process, then SIGKILL to all of it after ``stop_grace_period`` (or ``timeout``). Its
        exit code (None if it was not running)."""
        with self._lock:
            state = self.services[name]
            state.held = True
            state.restart_at = None
            proc = state.proc
            if proc is None:
                return None
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, state.spec.stop_signal)
            grace = state.spec.stop_grace if timeout is None else timeout
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not _exited(proc):
                time.sleep(0.05)
            return self._reap(state, "stopped")

    def restart(self, name: str, *, sigkill: bool = False) -> None:
        """Stop (or, with ``sigkill``, SIGKILL) service ``name`` and start it again with the
        same command."""
        if sigkill:
            self.kill(name)
        else:
            self.stop(name)
        self.start(name)

    def pids(self, name: str) -> list[int]:
        """The processes of service ``name`` (its process group), empty when it is not running."""
        with self._lock:
            proc = self.services[name].proc
            if proc is None:
                return []
            pgid = proc.pid
        return group_members(pgid)

    # -- one-off commands -------------------------------------------------------------------

    def popen(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``argv`` beside service ``name`` as ``docker compose exec`` would (its
        namespace, environment, volumes, private directory), in a process group of its own,
        stdout piped (text), stderr to the service's log; killed by ``close`` at the latest."""
        with self.services[name].log_path.open("ab") as log:
            log.write(f"[harness] exec: {shlex.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self._argv(name, argv),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.PIPE,
                cwd=self._cwd(name),
                env=self._environment(name, env),
                start_new_session=True,
                text=True,
            )
        self._oneoffs.append(proc)
        return proc

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` beside service ``name`` (see ``popen``) and wait for it; stdout and
        stderr captured. On timeout its process group is killed and TimeoutExpired raised."""
        proc = subprocess.Popen(
            self._argv(name, argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            cwd=self._cwd(name),
            env=self._environment(name, env),
            start_new_session=True,
            text=True,
        )
        self._oneoffs.append(proc)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group_and_reap_text(proc)
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._oneoffs.remove(proc)
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

    # -- looking -----------------------------------------------------------------------------

    def logs(self, name: str) -> str:
        """Service ``name``'s log so far (every start, with the harness's own lines)."""
        path = self.services[name].log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def describe(self, tail: int = 25) -> str:
        """Every service's state and the end of its log: for assertion messages."""
        parts = []
        with self._lock:
            states = list(self.services.items())
        for name, state in states:
            status = "running" if state.running else f"exited {state.exit_codes[-1:]}"
            lines = self.logs(name).splitlines()[-tail:]
            parts.append(f"--- {name}: {status}, {state.starts} start(s)\n" + "\n".join(lines))
        return "\n".join(parts)


def _kill_group_and_reap_text(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a one-off command's process group unless it was reaped already (its group id
    may then belong to someone else: what it left behind goes when its namespace is emptied)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


@contextlib.contextmanager
def compose_hosts(
    path: Path | None = None, *, logs_to: Path | None = None, max_restarts: int = 5
) -> Iterator[ComposeHosts]:
    """The compose file at ``path`` (default: the repository's ``docker-compose.yml``) on test
    hosts, services not started yet (call ``up``); everything removed on exit."""
    project = ComposeProject.load(path) if path is not None else ComposeProject.load()
    with ComposeHosts(project, logs_to=logs_to, max_restarts=max_restarts) as hosts:
        yield hosts
