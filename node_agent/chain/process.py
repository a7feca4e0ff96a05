"""The chain side in a process of its own.

Why: on a thread of its own (still in the agent's process) the chain side shared the GIL with
the HTTP API: during a 1,000-delivery burst a request's bytes waited up to 8 ms for the main
thread to get the GIL back (and a chain thread at a lower CPU priority made it worse: holding
the GIL while waiting for a core stalls every thread). In a process of its own it shares only
the CPU, at a lower priority (``nice``), and the API's threads never wait for it.

The parent (:class:`ChainProcess`, on the API loop) and the child (``python -m
node_agent.chain.process FD``) talk over one socketpair in length-prefixed pickle frames (both
ends are this program and nothing else holds the socket):

- parent → child: ``init`` (config, state dir, log level), ``call`` (accept_delegated,
  refresh_balances), ``ran`` (a container run's outcome), ``level`` (``log.level`` reloaded),
  ``stop``;
- child → parent: ``ready``/``failed``, ``status`` snapshots (every ``STATUS_EVERY`` s and after
  each call), ``reply``, ``run``/``cancel`` (container runs: the pipeline and its admission
  slots, shared with off-chain jobs, stay in the parent), ``rec`` (metrics), and ``line`` (a log
  line the child rendered as JSON, written by the parent's handlers: one process writes the log
  file) or ``log`` (an event dict, when the parent renders for a terminal).

Messages posted within one turn of a loop go out in one write (a burst posts thousands).

The child dies with the parent (``PR_SET_PDEATHSIG`` and the socket's end): an orphan must
never send a transaction the next agent does not know of. It ignores SIGINT/SIGTERM (systemd
signals the whole cgroup; the parent stops it with its grace period). A child that dies
otherwise (the OOM killer, a crash) is started again, with a growing delay, once it is gone for
certain (two children must never send for the same key); the new one resumes from the journal
as after a restart of the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from node_agent.chain.errors import ChainUnavailable
from node_agent.chain.runner import JobRunner, PipelineOutcome
from node_agent.chain.settings import OnchainConfig
from node_agent.config import Config
from node_agent.errors import NodeAgentError
from node_agent.logging import RENDERED, json_line, renders_json_lines, shared_processors
from node_agent.looplag import LoopLagMonitor
from node_agent.recorder import NO_RECORDER, Recorder

log = structlog.get_logger(__name__)

STATUS_EVERY = 0.25  # seconds between status snapshots
START_SECONDS = 60.0  # the child's imports, journal and key: ready within this
STOP_MARGIN = 15.0  # beyond the grace period, before the child is killed
TURN_SECONDS = 0.001  # of message handling before the API loop gets a turn
WRITE_AT_BYTES = 64 * 1024  # posted messages go out at the end of the turn, or at this size
# onchain.process_nice's default: the chain process yields the CPU to the API and the containers
CHAIN_NICE: int = OnchainConfig.model_fields["process_nice"].default
# A chain process that died is started again after RESTART_FIRST_S, the delay doubling up to
# RESTART_MAX_S while it keeps dying within STABLE_S of its start.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
STABLE_S = 60.0
_FRAME = struct.Struct("!I")
# What the child's recorder forwards (the chain side's metrics).
_RECORDED = frozenset(
    {"rpc_called", "delivery_finished", "payment_delivered", "payment_refused", "proof_settled"}
)


class Channel:
    """Length-prefixed pickle frames over a stream socket.

    A message is pickled when posted (an error surfaces at its sender); the frames posted in
    one turn of the loop go out in one write: one system call and one wake-up of the other
    side for a whole burst of metrics and log lines instead of one each. Safe to post from
    another thread (a library logging there)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0

    def post(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _FRAME.pack(len(data)) + data
        if threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self._queue, frame)
        else:
            self._queue(frame)

    def _queue(self, frame: bytes) -> None:
        if not self._outbox:
            self._loop.call_soon(self.flush)
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        if self._outbox_bytes >= WRITE_AT_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what was posted (the end of the turn does it anyway)."""
        if self._outbox and not self._writer.is_closing():
            self._writer.write(b"".join(self._outbox))
        self._outbox.clear()
        self._outbox_bytes = 0

    async def drain(self) -> None:
        self.flush()
        await self._writer.drain()

    async def receive(self) -> tuple[Any, ...]:
        """The next message; ``asyncio.IncompleteReadError`` at the other end's close."""
        (size,) = _FRAME.unpack(await self._reader.readexactly(_FRAME.size))
        message: tuple[Any, ...] = pickle.loads(await self._reader.readexactly(size))
        return message

    def close(self) -> None:
        self.flush()
        self._writer.close()


def error_to_wire(exc: BaseException) -> tuple[str, str, str, Any, Any]:
    """An exception as plain values (pickling a NodeAgentError would drop its params)."""
    if isinstance(exc, NodeAgentError):
        kind = type(exc)
        return (kind.__module__, kind.__qualname__, exc.error, exc.params, exc.retry_after)
    return ("", type(exc).__name__, str(exc)[:500], None, None)


def error_from_wire(wire: Sequence[Any]) -> Exception:
    module, name, error, params, retry_after = wire
    if module.startswith("node_agent."):
        kind = getattr(importlib.import_module(module), name, None)
        if isinstance(kind, type) and issubclass(kind, NodeAgentError):
            return kind(error, params, retry_after=retry_after)
    return RuntimeError(f"{name}: {error}")


def _gone() -> ChainUnavailable:
    return ChainUnavailable("Chain not running", {"reason": "the chain process has stopped"})


# --- the parent ---------------------------------------------------------------------------------


class ChainProcess:
    """The chain side's process, seen from the API loop (what the daemon and the API hold)."""

    def __init__(
        self,
        config: Config,
        state_dir: Path,
        runner: JobRunner,
        recorder: Recorder = NO_RECORDER,
        *,
        nice: int = CHAIN_NICE,
        status_every: float = STATUS_EVERY,
        restart_after: float = RESTART_FIRST_S,
        factory: str = "node_agent.chain.service:ChainService",
    ) -> None:
        self._factory = factory  # what the child builds (tests give a stand-in)
        self._config = config
        self._state_dir = state_dir
        self._runner = runner
        self._recorder = recorder
        self._nice = nice
        self._status_every = status_every
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._ids = itertools.count()
        self._address = ""
        self._status: dict[str, Any] = {"enabled": True, "ready": False}
        self._health: dict[str, Any] = {"status": "degraded", "reason": "chain starting"}
        self._pending = 0
        self._stopping = False
        self._ended = False
        self._restart_first = restart_after
        self._restart_delay = restart_after
        self._restarts = 0
        self._started_at = 0.0
        self._restart_at: float | None = None  # when the next start is due (monotonic)
        self._restarter: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the child and its service; raises what the service's start raised there."""
        await self._spawn()

    async def _spawn(self) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "node_agent.chain.process", str(child_end.fileno())),
                pass_fds=(child_end.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
            reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        except BaseException:
            parent_end.close()
            await self._kill()
            raise
        finally:
            child_end.close()
        channel = self._channel = Channel(reader, writer)
        init = (self._config, str(self._state_dir), self._status_every, self._nice, self._factory)
        logs = (logging.getLogger().getEffectiveLevel(), renders_json_lines())
        channel.post(("init", *init, *logs))
        try:
            first = await asyncio.wait_for(self._first_answer(channel), START_SECONDS)
            if first[0] == "failed":
                raise error_from_wire(first[1])
        except BaseException:
            channel.close()  # the socket too, on every way out of a failed start
            await self._kill()
            raise
        _, self._address = first
        self._ended = False
        self._started_at = time.monotonic()
        self._reader = asyncio.create_task(self._read_loop(channel), name="chain-process")

    async def _first_answer(self, channel: Channel) -> tuple[Any, ...]:
        while True:
            try:
                message = await channel.receive()
            except (asyncio.IncompleteReadError, ConnectionError):
                raise ChainUnavailable(
                    "Chain process ended while starting", {"exit_code": await self._exit_code()}
                ) from None
            if message[0] in ("ready", "failed"):
                return message
            self._handle(message)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the service (``grace`` for in-flight deliveries), then wait for the child."""
        self._stopping = True
        if self._restarter is not None:
            self._restarter.cancel()
            await asyncio.gather(self._restarter, return_exceptions=True)
        process = self._process
        if process is None:
            return
        if self._channel is not None and not self._ended:
            self._channel.post(("stop", grace))
        try:
            await asyncio.wait_for(process.wait(), grace + STOP_MARGIN)
        except TimeoutError:
            log.error("chain_process_not_stopped", waited_s=grace + STOP_MARGIN)
            await self._kill()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._channel is not None:
            self._channel.close()

    async def _kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _exit_code(self) -> int | None:
        if self._process is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self._process.wait(), 5)
        return None

    async def _read_loop(self, channel: Channel) -> None:
        clock = time.perf_counter
        turn_began = clock()
        try:
            while True:
                try:
                    message = await channel.receive()
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                try:
                    self._handle(message)
                except Exception as exc:  # one bad message must not cut the chain side off
                    log.error("chain_message_failed", kind=str(message[0]), error=repr(exc)[:300])
                # A burst sends thousands of messages (runs, metrics, log events) that arrive
                # buffered: reading them does not suspend, so give the loop a turn now and
                # then, or the API's requests wait behind all of them.
                if clock() - turn_began > TURN_SECONDS:
                    await asyncio.sleep(0)
                    turn_began = clock()
        finally:
            self._ended = True
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(_gone())
            self._replies.clear()
            for task in self._runs.values():
                task.cancel()
            if not self._stopping:
                if time.monotonic() - self._started_at >= STABLE_S:
                    self._restart_delay = self._restart_first  # it ran well: start over
                delay = self._next_delay()
                exit_code = await self._exit_code()
                log.error("chain_process_ended", exit_code=exit_code, restart_in_s=delay)
                if not self._stopping:
                    self._restarter = asyncio.create_task(self._restart(), name="chain-restart")

    def _next_delay(self) -> float:
        """The wait before the next start (it doubles for the one after)."""
        delay = self._restart_delay
        self._restart_delay = min(delay * 2, RESTART_MAX_S)
        self._restart_at = time.monotonic() + delay
        return delay

    async def _restart(self) -> None:
        """Start a new child once the old one is gone; retried with a growing delay."""
        while not self._stopping:
            due = self._restart_at or time.monotonic()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._kill()  # gone for certain before another child may send
            if self._channel is not None:
                self._channel.close()
            try:
                await self._spawn()
            except Exception as exc:
                retry_in = self._next_delay()
                log.error(
                    "chain_process_restart_failed", error=repr(exc)[:300], retry_in_s=retry_in
                )
                continue
            self._restarts += 1
            self._restart_at = None
            self._recorder.chain_process_restarted()
            log.warning("chain_process_restarted", pid=self.pid, restarts=self._restarts)
            return

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "status":
            _, self._status, self._health, self._pending = message
        elif kind == "line":
            _, level, name, line = message
            logger = logging.getLogger(name)
            if logger.isEnabledFor(level):  # a reload may have raised the level meanwhile
                logger.handle(
                    logger.makeRecord(name, level, "", 0, line, (), None, extra={RENDERED: line})
                )
        elif kind == "log":
            _, level, name, event, fields = message
            structlog.get_logger(name).log(level, event, **fields)
        elif kind == "rec":
            _, method, args = message
            if method in _RECORDED:
                getattr(self._recorder, method)(*args)
        elif kind == "run":
            run_id = message[1]
            self._runs[run_id] = asyncio.create_task(self._run(*message[1:]), name="chain-run")
        elif kind == "cancel":
            task = self._runs.pop(message[1], None)
            if task is not None:
                task.cancel()
        elif kind == "reply":
            _, call_id, result, error = message
            future = self._replies.pop(call_id, None)
            if future is not None and not future.done():
                if error is not None:
                    future.set_exception(error_from_wire(error))
                else:
                    future.set_result(result)

    async def _run(
        self,
        run_id: int,
        containers: list[str],
        data: Any,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> None:
        try:
            outcome = await self._runner.run(
                containers,
                data,
                source=source,
                destination=destination,
                requires_proof=requires_proof,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the delivery fails there, with this error
            self._post(("ran", run_id, None, error_to_wire(exc)))
        else:
            self._post(("ran", run_id, outcome, None))
        finally:
            self._runs.pop(run_id, None)

    def _post(self, message: tuple[Any, ...]) -> None:
        if self._channel is not None and not self._ended:
            self._channel.post(message)

    def set_log_level(self, level: int) -> None:
        """``log.level`` reloaded: the child filters its own lines by it."""
        self._post(("level", level))

    async def call(self, name: str, *args: Any) -> Any:
        """Run the child's operation ``name`` (``accept_delegated``, ``refresh_balances``: the
        ``calls`` of ``_serve``) and return its result; 503 at once if the child is gone."""
        if self._channel is None or self._ended:
            raise _gone()
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[call_id] = future
        self._channel.post(("call", call_id, name, args))
        try:
            return await future
        finally:
            self._replies.pop(call_id, None)

    # --- what the API reads ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._address

    def pending_count(self) -> int:
        return self._pending

    def status(self) -> dict[str, Any]:
        return {**self._status, "process_restarts": self._restarts}

    def health(self) -> dict[str, Any]:
        if self._ended and not self._stopping:
            due = self._restart_at
            return {
                **self.status(),
                "status": "unhealthy",
                "reason": "chain process stopped",
                "restart_in_s": None if due is None else round(max(0.0, due - time.monotonic()), 1),
            }
        return dict(self._health)

    async def accept_delegated(self, body: Mapping[str, Any], client_ip: str) -> None:
        await self.call("accept_delegated", dict(body), client_ip)


def create_chain_service(
    config: Config, state_dir: Path, runner: JobRunner, recorder: Recorder = NO_RECORDER
) -> ChainProcess:
    """Factory the daemon calls (it imports this module only when the chain is enabled)."""
    return ChainProcess(config, state_dir, runner, recorder, nice=config.onchain.process_nice)


# --- the child ----------------------------------------------------------------------------------


class _RemoteRunner:
    """Container runs, done by the parent's pipeline."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._waiting: dict[int, asyncio.Future[PipelineOutcome]] = {}
        self._ids = itertools.count()

    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> PipelineOutcome:
        run_id = next(self._ids)
        future: asyncio.Future[PipelineOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[run_id] = future
        self._channel.post(
            ("run", run_id, list(containers), data, source, destination, requires_proof)
        )
        try:
            return await future
        except asyncio.CancelledError:
            self._channel.post(("cancel", run_id))
            raise
        finally:
            self._waiting.pop(run_id, None)

    def resolve(self, run_id: int, outcome: Any, error: Any) -> None:
        future = self._waiting.get(run_id)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error_from_wire(error))
        else:
            future.set_result(outcome)


class _RemoteRecorder(Recorder):
    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def rpc_called(self, method: str, seconds: float) -> None:
        self._channel.post(("rec", "rpc_called", (method, seconds)))

    def delivery_finished(self, state: str, blocks: int | None) -> None:
        self._channel.post(("rec", "delivery_finished", (state, blocks)))

    def payment_delivered(self, token: str, amount: int) -> None:
        self._channel.post(("rec", "payment_delivered", (token, amount)))

    def payment_refused(self, code: str) -> None:
        self._channel.post(("rec", "payment_refused", (code,)))

    def proof_settled(self, outcome: str) -> None:
        self._channel.post(("rec", "proof_settled", (outcome,)))


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40}
_LEVELS["critical"] = 50


class _ForwardHandler(logging.Handler):
    """stdlib records (asyncio, web3, aiohttp) of the child, to the parent's log."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._channel.post(("log", record.levelno, record.name, record.getMessage(), {}))
        except Exception:  # logging must never take the chain side down
            self.handleError(record)


class _LogLevel:
    """The parent's level, applied here (a reload sends the new one): what it would drop is
    neither rendered nor sent."""

    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        if _LEVELS.get(method, 20) < self.level:
            raise structlog.DropEvent
        return event_dict


def _forward_logs(channel: Channel, level: _LogLevel, json_lines: bool) -> None:
    """structlog events to the parent: as JSON lines rendered here when every handler of the
    parent writes JSON (journald, a file: the parent only writes them), else as event dicts
    the parent renders (a terminal)."""

    def send_line(logger: Any, method: str, event_dict: Any) -> Any:
        line = json_line(event_dict)
        channel.post(("line", _LEVELS.get(method, 20), getattr(logger, "name", ""), line))
        raise structlog.DropEvent

    def send_event(logger: Any, method: str, event_dict: Any) -> Any:
        event = str(event_dict.pop("event", ""))
        event_dict.pop("level", None)
        fields = {k: v if _plain(v) else repr(v) for k, v in event_dict.items()}
        channel.post(("log", _LEVELS.get(method, 20), getattr(logger, "name", ""), event, fields))
        raise structlog.DropEvent

    processors: list[Any] = [level]
    if json_lines:
        processors += [*shared_processors(), send_line]
    else:
        processors += [
            structlog.contextvars.merge_contextvars,
            structlog.processors.format_exc_info,
            send_event,
        ]
    structlog.configure(
        processors=processors,
        logger_factory=lambda *args: _Named(str(args[0]) if args else "node_agent.chain"),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [_ForwardHandler(channel)]
    root.setLevel(logging.WARNING)  # libraries (asyncio, web3, aiohttp): warnings and up


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies (kill -9 included)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


async def _serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    channel = Channel(reader, writer)
    init = await channel.receive()
    _, config, state_dir, status_every, nice, factory, log_level, json_lines = init
    level = _LogLevel(log_level)
    _forward_logs(channel, level, json_lines)
    if nice:
        try:
            os.nice(nice)
        except OSError as exc:  # a seccomp filter without setpriority: run at the same priority
            log.warning("chain_process_priority_unchanged", nice=nice, error=str(exc))
    runner = _RemoteRunner(channel)
    module, _, name = factory.partition(":")  # node_agent.chain.service (web3): child only
    build = getattr(importlib.import_module(module), name)
    service = build(config, Path(state_dir), runner, _RemoteRecorder(channel))
    try:
        await service.start()
    except Exception as exc:
        channel.post(("failed", error_to_wire(exc)))
        await channel.drain()
        return
    lag = LoopLagMonitor(NO_RECORDER)
    lag_task = asyncio.create_task(lag.run(asyncio.Event()))

    def publish() -> None:
        status = {**service.status(), "event_loop": lag.status()}
        channel.post(("status", status, service.health(), service.pending_count()))

    async def publish_loop() -> None:
        while True:
            await asyncio.sleep(status_every)
            try:
                publish()
            except Exception as exc:  # a bug in a status field must not end the snapshots
                log.error("chain_status_failed", error=repr(exc)[:300])

    calls: dict[str, Any] = {
        "accept_delegated": service.accept_delegated,
        "refresh_balances": lambda tokens: service.payments.refresh_balances(tokens),
    }

    async def serve_call(call_id: int, name: str, args: tuple[Any, ...]) -> None:
        try:
            result, error = await calls[name](*args), None
        except Exception as exc:
            result, error = None, error_to_wire(exc)
        publish()  # before the reply: the caller's next read of /info shows what it did
        channel.post(("reply", call_id, result, error))

    publish()
    channel.post(("ready", service.address))
    publisher = asyncio.create_task(publish_loop())
    tasks: set[asyncio.Task[None]] = set()
    grace = 0.0
    try:
        while True:
            try:
                message = await channel.receive()
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the parent is gone: stop at once (nothing may be sent for it later)
            kind = message[0]
            if kind == "ran":
                runner.resolve(*message[1:])
            elif kind == "call":
                task = asyncio.create_task(serve_call(*message[1:]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif kind == "level":
                level.level = int(message[1])
            elif kind == "stop":
                grace = float(message[1])
                return
    finally:
        publisher.cancel()
        lag_task.cancel()
        await service.stop(grace)
        with contextlib.suppress(Exception):
            publish()
            await channel.drain()
        channel.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops this process
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(int(args[0])))
    else:
        uvloop.run(_serve(int(args[0])))


if __name__ == "__main__":
    main()
