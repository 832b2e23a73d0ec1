"""Commands in a private mount namespace (a real tmpfs that fills up, a read-only bind mount) that nothing
outside it sees, and commands that file modes bind even as root (importable as `mountutil`).

A mount namespace needs CAP_SYS_ADMIN (root) or an unprivileged user namespace; a machine with neither
(a container without CAP_SYS_ADMIN under a seccomp profile, a kernel or AppArmor that forbids unprivileged
user namespaces) cannot give these tests their disk: they fail saying so, never skip (a skip would hide the
check in CI). A check that needs no mount (`unprivileged`) runs there too.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping

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
