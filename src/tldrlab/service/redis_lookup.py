"""The Redis host's name looked up within the connect timeout, for `redis_outage.redis_client`'s connections.

redis-py looks the host up with `socket.getaddrinfo` each time it opens a connection, before its connect
timeout applies: when the DNS server does not answer, the C resolver waits out its own timeouts (5 s per
attempt, two attempts, per nameserver in resolv.conf: 10 to 30 s) and a `POST /runs`, a worker's loop or an
event waited as long on every try, past the bound `redis_outage.call_bound_s` promises, and said only
"Temporary failure in name resolution" in the end. getaddrinfo cannot be interrupted, so the lookup runs in
a thread of its own that the connection waits for at most its connect timeout; past that it raises
`HostLookupTimeoutError` (a redis-py TimeoutError, retried and reported as Redis being unreachable) and the
thread ends whenever the resolver gives up.

An address (`redis://10.0.0.5`, `redis://[::1]`) is not looked up, and no thread is started for it; a name
that resolves gives the same addresses, tried in the same order with the same socket options, as redis-py's
own `Connection`."""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import threading
from concurrent.futures import Future
from typing import Any

import redis
from redis.connection import Connection, SSLConnection

AddressInfo = list[tuple[Any, ...]]
"""What `socket.getaddrinfo` returns: (family, type, proto, canonname, sockaddr) per address."""


class HostLookupTimeoutError(redis.TimeoutError):
    """The Redis host's name got no answer within the connect timeout."""

    def __init__(self, host: str, timeout_s: float) -> None:
        super().__init__(f"the host name {host} could not be resolved within {timeout_s:g}s")
        self.host = host
        self.timeout_s = timeout_s


_lookups: dict[tuple[str, int, int], Future[AddressInfo]] = {}
"""The lookups under way, by (host, port, family): a connection that asks while one is under way waits for
it rather than starting another, so a DNS server that does not answer leaves one waiting thread per host, not
one per try of every client, each for the resolver's 10-30 s."""
_lookups_lock = threading.Lock()


def _forget_lookups_in_child() -> None:
    # a forked child has none of its parent's lookup threads: a future of theirs would never be done
    global _lookups_lock
    _lookups.clear()
    _lookups_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_lookups_in_child)


def _look_up(key: tuple[str, int, int], lookup: Future[AddressInfo]) -> None:
    host, port, family = key
    try:
        addresses = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except BaseException as exc:  # a gaierror (no such name, the resolver gave up) goes to every waiter
        outcome: BaseException | None = exc
    else:
        outcome = None
    with _lookups_lock:
        if _lookups.get(key) is lookup:
            del _lookups[key]  # the next connection looks the name up afresh, as redis-py does
    if outcome is None:
        lookup.set_result(addresses)
    else:
        lookup.set_exception(outcome)


def resolve(host: str, port: int, family: int, timeout_s: float | None) -> AddressInfo:
    """`socket.getaddrinfo(host, port, family, SOCK_STREAM)`, as redis-py's `Connection` calls it, waiting at
    most `timeout_s` for a name's answer (HostLookupTimeoutError past it; None waits as long as the resolver
    does). An address is returned in this thread, with no lookup."""
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass  # a name, not an address
    if timeout_s is None:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    key = (host, port, family)
    with _lookups_lock:
        lookup = _lookups.get(key)
        if lookup is None:
            lookup = _lookups[key] = Future()
            threading.Thread(
                target=_look_up, args=(key, lookup), name=f"redis-host-lookup {host}", daemon=True
            ).start()
    try:
        return lookup.result(timeout_s)
    except TimeoutError:  # concurrent.futures' (the builtin's alias), not redis-py's; getaddrinfo raises none
        raise HostLookupTimeoutError(host, timeout_s) from None
    except OSError as exc:
        # a copy: waiters on one lookup raise in their own threads, each with its own traceback
        raise copy.copy(exc) from None


class BoundedLookupConnection(Connection):
    """redis-py's TCP `Connection`, whose host name lookup waits at most the connect timeout (`resolve`)."""

    def _connect(self) -> socket.socket:
        # redis-py 8's `Connection._connect`, with `resolve` where it calls socket.getaddrinfo
        err: OSError | None = None
        for family, socktype, proto, _canonname, socket_address in resolve(
            self.host, self.port, self.socket_type, self.socket_connect_timeout
        ):
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.socket_keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    for option, value in self.socket_keepalive_options.items():
                        sock.setsockopt(socket.IPPROTO_TCP, option, value)
                sock.settimeout(self.socket_connect_timeout)
                sock.connect(socket_address)
                sock.settimeout(self.socket_timeout)
                return sock
            except OSError as exc:
                err = exc
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
        if err is not None:
            raise err
        raise OSError("socket.getaddrinfo returned an empty list")


class BoundedLookupSSLConnection(SSLConnection, BoundedLookupConnection):
    """redis-py's `SSLConnection` (rediss://) over `BoundedLookupConnection`: it wraps the socket that
    connection opens."""


def connection_class(url: str) -> type[Connection] | None:
    """The connection class `redis_client` gives redis-py for `url`: one of the above for a host (redis://,
    rediss://), None (redis-py's own) for a Unix socket, which has no host to look up."""
    scheme = url.partition("://")[0].lower()
    if scheme == "redis":
        return BoundedLookupConnection
    if scheme == "rediss":
        return BoundedLookupSSLConnection
    return None
