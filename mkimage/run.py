"""Every external program goes through here: argv lists, stdin from /dev/null, a clean environment,
its own process group (so an interrupt can stop the whole tree of it), output to the build log."""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Mapping, Sequence

from .errors import MkimageError

# Variables passed through from the caller's environment to the tools we run.
PASSTHROUGH_ENV = (
    "PATH", "TMPDIR", "SOURCE_DATE_EPOCH", "http_proxy", "https_proxy", "ftp_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "DOCKER_HOST", "DOCKER_CONFIG",
    "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH",
    "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF", "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
)
# Variables a yum/dnf config may use ($name), set in the environment: DNF_VAR_name and DNF0-DNF9 (dnf), YUM0-YUM9
# (yum 3).  The package manager must see the values the config was read with.
CONFIG_VARIABLE_PREFIXES = ("DNF_VAR_", *(f"DNF{digit}" for digit in range(10)), *(f"YUM{digit}" for digit in range(10)))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAIL_LINES = 200
TAIL_LINE_MAX = 8192
"""Characters of one output line kept for error messages (the log keeps every byte)."""
KILL_GRACE_SECONDS = 2.0


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for tools: only what they need, in the C locale so their messages can be matched."""
    env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
    env.update({name: value for name, value in os.environ.items() if name.startswith(CONFIG_VARIABLE_PREFIXES)})
    env.setdefault("PATH", DEFAULT_PATH)
    env.update({"LC_ALL": "C", "LANG": "C", "HOME": "/root"})
    env.update(extra or {})
    return env


class BuildLog:
    """The full output of every command of one build, in a file outside the rootfs (the architectures of a
    multi-architecture build write to it side by side, one write at a time).

    Writing it never raises: a log on a full file system must not abort the build half-way, nor its cleanup.  The
    first failure is kept in ``error`` (the pipeline turns it into the build's error at the end of the stage) and
    nothing more is written after it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: OSError | None = None
        self._devnull: int | None = None
        self._file: IO[str] | None = None
        self._lock = threading.RLock()
        try:
            self._file = open(path, "a", encoding="utf-8", errors="replace")
        except OSError as err:
            self.error = err

    def _guarded(self, action: Callable[[IO[str]], None]) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                action(self._file)
            except OSError as err:
                self._fail(err)

    def _fail(self, err: OSError) -> None:
        self.error = self.error or err
        file, self._file = self._file, None
        try:
            if file is not None:
                file.close()  # the buffered text is lost with the file system's space; the descriptor is closed
        except OSError:
            pass

    def write(self, text: str) -> None:
        self._guarded(lambda file: file.write(text))

    def command(self, argv: Sequence[str]) -> None:
        self._guarded(lambda file: (file.write(f"+ {shlex.join(argv)}\n"), file.flush()))

    def fileno(self) -> int:
        """A descriptor for a child's stderr: the log's, or /dev/null once the log failed."""
        self.flush()
        if self._file is not None:
            return self._file.fileno()
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        return self._devnull

    def flush(self) -> None:
        self._guarded(lambda file: file.flush())

    def close(self) -> None:
        self._guarded(lambda file: file.close())
        self._file = None
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    tail: list[str] = field(default_factory=list)
    """The last lines of stdout and stderr together."""
    stdout: str = ""
    timed_out: bool = False
    """The command ran out of time and was stopped (returncode is then -1 or the signal's)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def command_name(argv: Sequence[str]) -> str:
    return os.path.basename(argv[0])


def missing_tool(argv: Sequence[str]) -> MkimageError:
    return MkimageError(f"{argv[0]} not found: install it or put it on PATH")


def stop_process_group(proc: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the whole process group (dnf defers it during a transaction, scriptlets ignore SIGINT),
    then SIGKILL whatever is left after the grace period."""
    if proc.poll() is not None:
        return
    for sig, wait_for in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_for)
            return
        except subprocess.TimeoutExpired:
            continue


class Cancelled(MkimageError):
    """A command was not started: the build is stopping (another architecture's build failed, or an interrupt)."""


class _Running:
    """Every command mkimage started, so that they can all be stopped at once from the main thread when the
    architectures of a build run side by side in threads; while stopped, no new command starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()
        self._stopping = False

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)
            stopping = self._stopping
        if stopping:
            stop_process_group(proc, grace=0)

    def check(self, argv: Sequence[str]) -> None:
        if self._stopping:
            raise Cancelled(f"{command_name(argv)} not started: the build is stopping")

    def stop_all(self) -> None:
        """Stop every command still running, each with its whole process group; refuse new ones until resume()."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs)
        for proc in procs:
            stop_process_group(proc)

    def resume(self) -> None:
        with self._lock:
            self._stopping = False


RUNNING = _Running()


def spawn(argv: Sequence[str], env: Mapping[str, str] | None = None, **popen: object) -> subprocess.Popen:
    """Start a command in its own session and process group (so a terminal's Ctrl-C reaches mkimage only, and
    mkimage can stop the whole tree), stdin from /dev/null unless given, with the tools' environment."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    RUNNING.check(argv)
    try:
        proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else tool_env(),
                                start_new_session=True, **popen)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise missing_tool(argv) from None
    RUNNING.add(proc)
    return proc


def _kill_group_quietly(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail_line(text: str) -> str:
    """A line as kept for error messages: at most TAIL_LINE_MAX characters."""
    return text if len(text) <= TAIL_LINE_MAX else text[:TAIL_LINE_MAX] + " ..."


def run_streaming(
    argv: Sequence[str],
    *,
    log: BuildLog,
    on_line: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Run a long command, its combined output going line by line to the log (and to on_line).  After timeout
    seconds its process group is stopped (SIGTERM, then SIGKILL) and the result says timed_out."""
    log.command(argv)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    proc = spawn(argv, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                 bufsize=1)
    expired = threading.Event()
    timer = _deadline(proc, timeout, expired)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            text = tail_line(line.rstrip("\n"))
            tail.append(text)
            if on_line is not None:
                on_line(text)
        returncode = proc.wait()
    except BaseException:
        stop_process_group(proc)
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    log.write(f"[exit {returncode}{', timed out' if expired.is_set() else ''}]\n")
    log.flush()
    return CommandResult(list(argv), returncode, list(tail), timed_out=expired.is_set())


def _deadline(proc: subprocess.Popen, timeout: float | None, expired: threading.Event) -> threading.Timer | None:
    """A timer that stops proc's process group after timeout seconds (and sets expired); None without one."""
    if timeout is None:
        return None

    def expire() -> None:
        expired.set()
        stop_process_group(proc)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    return timer


def run_captured(
    argv: Sequence[str],
    *,
    log: BuildLog | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Run a short command and keep its stdout; stderr goes to the result's tail (and the log)."""
    if log is not None:
        log.command(argv)
    proc = spawn(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        stdout, stderr = proc.communicate()
        if log is not None:
            log.write(stdout + stderr + f"[timed out after {timeout:g}s]\n")
        said = [tail_line(line) for line in (stderr.splitlines() + stdout.splitlines())[-TAIL_LINES + 1:]]
        return CommandResult(list(argv), -1, [*said, f"{command_name(argv)} timed out after {timeout:g}s"], stdout,
                             timed_out=True)
    except BaseException:
        stop_process_group(proc)
        raise
    if log is not None:
        log.write(stdout + stderr + f"[exit {proc.returncode}]\n")
    tail = [tail_line(line) for line in (stderr.splitlines() + stdout.splitlines())[-TAIL_LINES:]]
    return CommandResult(list(argv), proc.returncode, tail, stdout)


@dataclass
class PipeResult:
    producer_code: int
    consumer_code: int
    bytes_moved: int
    consumer_stdout: str
    consumer_tail: list[str]


RELAY_CHUNK = 1 << 20


def _move_bytes(source_fd: int, sink_fd: int | None, on_progress: Callable[[int], None] | None,
                tee: Callable[[bytes], None] | None = None) -> int:
    """Copy a pipe into another (or nowhere) until EOF: zero-copy with splice(2) where Python has it and nobody
    else wants the bytes; otherwise read and write, handing every chunk to tee on the way."""
    total = 0
    splice = getattr(os, "splice", None) if tee is None and sink_fd is not None else None
    last_report = 0.0
    while True:
        if splice is not None and sink_fd is not None:
            moved = splice(source_fd, sink_fd, RELAY_CHUNK)
        else:
            moved = _read_write(source_fd, sink_fd, RELAY_CHUNK, tee)
        if moved == 0:
            return total
        total += moved
        now = time.monotonic()
        if on_progress is not None and now - last_report > 0.25:
            on_progress(total)
            last_report = now


def _read_write(source_fd: int, sink_fd: int | None, chunk: int, tee: Callable[[bytes], None] | None) -> int:
    data = os.read(source_fd, chunk)
    if data and tee is not None:
        tee(data)
    view = memoryview(data)
    while view and sink_fd is not None:
        written = os.write(sink_fd, view)
        view = view[written:]
    return len(data)


def run_pipe(
    producer: Sequence[str],
    consumer: Sequence[str],
    *,
    log: BuildLog,
    on_progress: Callable[[int], None] | None = None,
    tee: Callable[[bytes], None] | None = None,
    consumer_env: Mapping[str, str] | None = None,
) -> PipeResult:
    """producer | consumer, without a shell and without a temp file, counting the bytes (and handing them to
    tee as well, when given: one stream feeds the consumer and every other output).

    The consumer's stdin is closed only after the producer exited 0; if the producer fails, the consumer
    is killed first so that it never sees a clean end of a truncated stream.
    """
    log.command([*producer, "|", *consumer])
    prod = spawn(producer, stdout=subprocess.PIPE, stderr=log.fileno())
    try:
        cons = spawn(consumer, consumer_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except BaseException:
        stop_process_group(prod)
        raise
    assert prod.stdout is not None and cons.stdin is not None
    moved = 0
    try:
        try:
            moved = _move_bytes(prod.stdout.fileno(), cons.stdin.fileno(), on_progress, tee)
        except BrokenPipeError:
            _kill_group_quietly(prod)
        producer_code = prod.wait()
        if producer_code != 0:
            _kill_group_quietly(cons)
        try:
            cons.stdin.close()
        except BrokenPipeError:
            pass
        assert cons.stdout is not None and cons.stderr is not None
        stdout, stderr = cons.stdout.read(), cons.stderr.read()
        cons.wait()
    except BaseException:
        stop_process_group(prod)
        stop_process_group(cons)
        raise
    finally:
        prod.stdout.close()
    text_out = stdout.decode(errors="replace")
    text_err = stderr.decode(errors="replace")
    log.write(text_out + text_err + f"[exit {producer_code} | {cons.returncode}, {moved} bytes]\n")
    log.flush()
    return PipeResult(producer_code, cons.returncode, moved, text_out, text_err.splitlines()[-TAIL_LINES:])


def run_producer(producer: Sequence[str], *, log: BuildLog, tee: Callable[[bytes], None],
                 on_progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Run producer, handing its stdout to tee chunk by chunk; (exit code, bytes)."""
    log.command(producer)
    prod = spawn(producer, stdout=subprocess.PIPE, stderr=log.fileno())
    assert prod.stdout is not None
    try:
        moved = _move_bytes(prod.stdout.fileno(), None, on_progress, tee)
        code = prod.wait()
    except BaseException:
        stop_process_group(prod)
        raise
    finally:
        prod.stdout.close()
    log.write(f"[exit {code}, {moved} bytes]\n")
    log.flush()
    return code, moved


def run_feeding(argv: Sequence[str], feed: Callable[[IO[bytes]], None], *, log: BuildLog,
                env: Mapping[str, str] | None = None) -> CommandResult:
    """Run argv with feed writing its stdin (then closed); its output (small: `docker load`'s) is read after."""
    log.command([*argv, "< (stream)"])
    proc = spawn(argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        try:
            feed(proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        output = proc.stdout.read().decode(errors="replace")
        returncode = proc.wait()
    except BaseException:
        stop_process_group(proc)
        raise
    finally:
        proc.stdout.close()
    log.write(output + f"[exit {returncode}]\n")
    return CommandResult(list(argv), returncode, output.splitlines()[-TAIL_LINES:], output)


def relevant_lines(lines: Iterable[str], patterns: Iterable[str], limit: int = 8) -> list[str]:
    """The lines of a tool's output that explain a failure, picked by substring patterns."""
    wanted = tuple(p.lower() for p in patterns)
    picked = [line.strip() for line in lines if any(p in line.lower() for p in wanted)]
    unique = list(dict.fromkeys(line for line in picked if line))
    return unique[:limit]
