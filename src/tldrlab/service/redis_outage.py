"""Redis being unreachable, as each part of a process that talks to Redis sees it (a worker's RQ connection,
the job queue's own, the event bus's): one warning when a command first fails, saying what is lost or waits
meanwhile and that it is tried again, nothing more while Redis stays down, and one info line when a command
gets through again.

A warning per failed command was a flood: a training reporting every step logged one per step for the whole
outage, and a worker's maintenance one per pass. Each part keeps its own `RedisOutage`, since each loses
something else (a worker's job loop waits, events are dropped), so a process says so once per part.

Every Redis client tldrlab opens comes from `redis_client`: explicit connect and read timeouts (settings
`redis_connect_timeout_s`, `redis_timeout_s`), the host's name looked up within the connect timeout
(`redis_lookup`), and a bounded retry (`RETRIES`), so a call against a Redis that does not answer, or whose
name the DNS server does not answer, gives up within `call_bound_s`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tldrlab.config import Settings, get_settings
from tldrlab.errors import ServiceUnavailableError

BACKOFF_S = (0.25, 4.0)
"""First and longest wait (seconds) between attempts to reach Redis again (`outage_retry`): the wait doubles
from the first up to the longest, so a connection is back at most that long after Redis is."""

RETRIES = 1
"""How many times a client of `redis_client` tries a command again after a connection error or a timeout
(redis-py reconnects first): one, so a Redis restarted or a connection it closed costs nothing, while a
Redis that does not answer is given up on after two tries. redis-py's own default differs by version and
by how a client is made (none through `from_url` in 8.x, ten retries through `Redis()`)."""
RETRY_BACKOFF_S = (0.05, 0.2)
"""First and longest wait (seconds) before a retry of `RETRIES`."""


def bounded_retry(retries: int = RETRIES) -> Any:
    """The retry of `redis_client`: `retries` tries more of a command that met a connection error or a
    timeout, after a short exponential backoff (`RETRY_BACKOFF_S`)."""
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return Retry(ExponentialBackoff(cap=RETRY_BACKOFF_S[1], base=RETRY_BACKOFF_S[0]), retries)


def redis_client(
    url: str,
    settings: Settings | None = None,
    *,
    connect_timeout_s: float | None = None,
    read_timeout_s: float | None = None,
    retry: Any = None,
) -> Any:
    """A redis-py client of `url`, the one way tldrlab makes one (the job queue's, the event bus's and its
    subscriptions', the RQ worker's, the Discord watch list's): it waits at most `connect_timeout_s` (default
    the setting `redis_connect_timeout_s`) for a connection to open and `read_timeout_s` (`redis_timeout_s`)
    for each answer, and retries as `retry` says (default `bounded_retry()`). Each client chose its own
    timeouts before (2 s to connect, 10 s for an answer) and left retries to redis-py's defaults, which vary
    with its version and with how a client is made (ten retries through `Redis()`): a `POST /runs` against
    a hung Redis took 10 s to answer 503.

    The host's name is looked up within the connect timeout too (`redis_lookup.BoundedLookupConnection`; a
    wait of its own, before the connect's): redis-py looks it up outside its timeouts, and a DNS server
    that did not answer held each try for the C resolver's 10-30 s. A name it does not answer in time is
    `redis_lookup.HostLookupTimeoutError` ("the host name ... could not be resolved within 0.5s").

    A call against a Redis that does not answer thus gives up within `call_bound_s`: a host that accepts no
    connection, or whose name gets no answer, after (RETRIES + 1) connect timeouts, a hung server after
    (RETRIES + 1) read timeouts. redis-py applies the retry to opening a connection inside a command's retry
    as well, so a Redis that stops answering midway through a call may cost it one try more."""
    import redis

    from tldrlab.service.redis_lookup import connection_class

    settings = settings or get_settings()
    bounded_lookup = connection_class(url)  # None for a Unix socket: redis-py's own, no host to look up
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=(
            settings.redis_connect_timeout_s if connect_timeout_s is None else connect_timeout_s
        ),
        socket_timeout=settings.redis_timeout_s if read_timeout_s is None else read_timeout_s,
        retry=retry if retry is not None else bounded_retry(),
        **({"connection_class": bounded_lookup} if bounded_lookup is not None else {}),
    )


def call_bound_s(settings: Settings | None = None, retries: int = RETRIES) -> float:
    """How long one call of a `redis_client` client (default timeouts) waits on a Redis that does not answer
    before it raises: each try looks the host's name up and connects (each within the connect timeout) and
    waits for an answer, with the backoffs between them. A host that accepts no connection (blackholed), or
    whose name gets no answer, is given up on sooner, after (retries + 1) connect timeouts."""
    settings = settings or get_settings()
    per_try = 2 * settings.redis_connect_timeout_s + settings.redis_timeout_s
    return (retries + 1) * per_try + retries * RETRY_BACKOFF_S[1]


class RedisUnreachableError(ServiceUnavailableError):
    """Redis did not answer, and the `RedisOutage` of the part that asked has logged it: a caller that carries
    on (a worker's maintenance pass, the announcement of waiting runs) adds no line of its own."""


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """What redis-py raises when Redis is not there (refused, reset, timed out), not when it refuses."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


def unreachable_reason(error: BaseException) -> str:
    """Why Redis was unreachable, for a message that names no more than the error's type: the type, or for
    a host name that got no answer (`redis_lookup.HostLookupTimeoutError`) that, with the name and the
    timeout, since "TimeoutError" alone sends whoever reads it looking at Redis rather than at DNS."""
    from tldrlab.service.redis_lookup import HostLookupTimeoutError

    return str(error) if isinstance(error, HostLookupTimeoutError) else type(error).__name__


class RedisOutage:
    """One part of a process's view of Redis being unreachable, shared by its connections and threads.

    `meanwhile` says what that part loses or holds back while Redis is down and when it tries again (it ends
    the warning: "Redis is unreachable (ConnectionError: ...): <meanwhile>"); `back` what it does once Redis
    answers (it ends the info line)."""

    def __init__(self, logger: logging.Logger, meanwhile: str, back: str = "") -> None:
        self.log = logger
        self.meanwhile = meanwhile
        self.back = back
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def down(self) -> bool:
        """Whether a command has failed since one last got through."""
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        """A command failed for want of Redis: the warning, if this is the first failure of the outage."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        self.log.warning(f"Redis is unreachable ({type(error).__name__}: {error}): {self.meanwhile}")

    def answered(self) -> None:
        """A command got through: the line saying so, if it ends an outage. A warning as the outage's own line
        is: at the default level (WARNING) an operator saw the outage begin and never end."""
        if self._since is None:  # the usual case, read without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            back = f": {self.back}" if self.back else ""
            self.log.warning(f"Redis answers again after {time.monotonic() - since:.1f}s{back}")

    def unreachable(self, error: BaseException, what: str) -> RedisUnreachableError:
        """`failed`, and the error for a caller that asked Redis for something (`what`) and got no answer."""
        self.failed(error)
        return RedisUnreachableError(f"{what}: Redis is unreachable ({unreachable_reason(error)})")

    @contextmanager
    def asking(self, what: str) -> Iterator[None]:
        """Around commands whose caller needs Redis's answer (`what` it asks for, for the message):
        RedisUnreachableError (`unreachable`) when Redis gives none, `answered` when it does."""
        try:
            yield
        except unreachable_errors() as exc:
            raise self.unreachable(exc, what) from exc
        self.answered()


def outage_retry(
    outage: RedisOutage,
    give_up: Callable[[], bool],
    stopping: Callable[[Exception], BaseException | None] = lambda error: None,
    backoff_s: tuple[float, float] = BACKOFF_S,
) -> Any:
    """A redis-py `Retry` that retries a command on a connection error or timeout, with exponential backoff
    (`backoff_s`: the first wait and the longest, default `BACKOFF_S`), until Redis answers, or until
    `give_up()` (its user is stopping: what it still had to say to Redis is not worth waiting for). Each
    failure and the answer that ends them go to `outage`. Given up, it raises `stopping(error)` where that is
    an exception (what the caller's loop takes for a stop), else the error itself.

    redis-py copies a connection's retry into each connection it opens: a copy is the same object, so the
    outage is one however many connections meet it."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    class OutageRetry(Retry):
        def __deepcopy__(self, memo: dict[int, Any]) -> OutageRetry:
            return self

        def call_with_retry(
            self, do: Callable[[], Any], fail: Callable[..., Any], *args: Any, **kwargs: Any
        ) -> Any:
            failures: list[Exception] = []

            def failed(error: Exception, *count: Any) -> None:
                failures.append(error)
                outage.failed(error)
                fail(error, *count)  # redis-py's: drops the broken connection
                if not give_up():
                    return
                stop = stopping(error)
                if stop is None:
                    raise error
                raise stop from error

            result = super().call_with_retry(do, failed, *args, **kwargs)
            if failures:  # through, after failing: Redis answers again (a first try may not have reached it)
                outage.answered()
            return result

    return OutageRetry(
        ExponentialBackoff(cap=backoff_s[1], base=backoff_s[0] / 2),
        -1,  # forever
        (redis.ConnectionError, redis.TimeoutError, OSError),
    )


def every_backoff() -> str:
    """How often `outage_retry` tries again, in words."""
    return f"every {BACKOFF_S[0]:g}s doubling up to {BACKOFF_S[1]:g}s"
