"""Commands in a private mount namespace (a real tmpfs that fills up, a read-only bind mount) that nothing
outside it sees, and commands that file modes bind even as root (importable as `mountutil`).

A mount namespace needs CAP_SYS_ADMIN (root) or an unprivileged user namespace; a machine with neither
(a container without CAP_SYS_ADMIN under a seccomp profile, a kernel or AppArmor that forbids unprivileged
user namespaces) cannot give these tests their disk: they fail saying so, never skip (a skip would hide the
check in CI). A check that needs no mount (`unprivileged`) runs there too. A server already running (the
session's PostgreSQL) sees no private namespace's mount: its disk is a tmpfs in the machine's own namespace
(`shared_tmpfs`), which only root mounts.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

_TRIES = (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"])


@functools.cache
def _unshare() -> list[str] | str:
    """The first `unshare` prefix under which a tmpfs can be mounted here, or what each try said."""
    said = []
    for prefix in _TRIES if os.geteuid() == 0 else _TRIES[1:]:
        target = tempfile.mkdtemp(prefix="tldrlab-mount-probe-")
        try:
            probe = subprocess.run(
                [*prefix, "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {target}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        finally:
            shutil.rmtree(target, ignore_errors=True)
        if probe.returncode == 0:
            return prefix
        said.append(f"`{' '.join(prefix)}`: {probe.stderr.strip()}")
    return "; ".join(said)


def in_mount_namespace(
    script: str, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`sh -c script` in a mount namespace of its own (as root, or as root of a user namespace): its
    `mount` commands are seen by it alone. Fails the test, naming the missing right, where there is none."""
    prefix = _unshare()
    if isinstance(prefix, str):
        pytest.fail(
            "this check needs a private mount namespace (root with CAP_SYS_ADMIN, or unprivileged user "
            f"namespaces) and this machine gives none: {prefix}",
            pytrace=False,
        )
    return subprocess.run(
        [*prefix, "sh", "-c", script], env=dict(env), capture_output=True, text=True, timeout=timeout
    )


def unprivileged(command: list[str]) -> list[str]:
    """`command` bound by file modes as any user is: run by root, without CAP_DAC_OVERRIDE (the capability
    that lets root write where the modes say no), else as it is."""
    if os.geteuid() != 0:
        return command
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--", *command]


@contextmanager
def shared_tmpfs(directory: Path, size: str, uid: int, gid: int) -> Iterator[None]:
    """A tmpfs of `size` (mount's `size=`: 4k, 1m) on `directory`, owned by `uid`:`gid`, mounted in this
    machine's own mount namespace, for a server that runs outside the test's processes to write into (a
    PostgreSQL tablespace): a private namespace's mount is seen by its own processes alone. Only root mounts
    there; fails the test saying so otherwise. Unmounted on exit."""
    if os.geteuid() != 0:
        pytest.fail(
            "this check mounts a tmpfs that a running server sees, which takes root (CAP_SYS_ADMIN in the "
            f"machine's own mount namespace); this process runs as uid {os.geteuid()}",
            pytrace=False,
        )
    options = f"size={size},uid={uid},gid={gid},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True, timeout=30)


def resize_tmpfs(directory: Path, size: int) -> None:
    """The tmpfs on `directory` (`shared_tmpfs`) holds `size` bytes from now on: less fills it, more frees
    space. It cannot shrink under what its files take."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(directory)], check=True, timeout=30)


def tmpfs_used(directory: Path) -> int:
    """The bytes the files on the tmpfs on `directory` take, in whole pages."""
    stats = os.statvfs(directory)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize
