"""Who writes into an output folder: a process named by its host, its process id and its
start time, and whether such a process still runs.

The temporaries of salcli's atomic writers (``salcli.files.temp_name``) and the claims of
corpus runs (``salcli.corpus.claims``) carry this identity, so that a later run tells a
leftover of a dead process from the work of a live one:

- on the same host, the holder is alive while a process with its pid runs *and* started
  when it did (Linux: ``/proc/<pid>/stat``'s start time, in clock ticks since boot, with
  the boot's id), so a pid the system gave again to another process does not keep a dead
  holder alive; where the start time cannot be read (not Linux), the pid alone decides;
- on another host nothing can be asked: a claim's heartbeat (its file's modification
  time) decides, against a lease (``salcli.corpus.claims``).

``host_name`` and ``now`` are the seams the tests replace to play another host and a
later time.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
BOOT_ID = PROC / "sys" / "kernel" / "random" / "boot_id"
START_FIELD = 21  # /proc/<pid>/stat: starttime is field 22 (1-based), 21 after the pid
HOST_TAG_CHARS = 40  # the longest host name a temporary's name carries
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def host_name() -> str:
    """This machine's name (the tests' seam for another host)."""
    return socket.gethostname() or "localhost"


def now() -> float:
    """Seconds since the epoch (the tests' seam for a later time)."""
    return time.time()


def host_tag(host: str) -> str:
    """``host`` as a file name may carry it: letters, digits, ``_`` and ``-`` only (a dot
    would make a temporary's name ambiguous), at most ``HOST_TAG_CHARS``."""
    return _UNSAFE.sub("_", host)[:HOST_TAG_CHARS] or "_"


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; None when it does not run
    or cannot be told (no ``/proc``)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces and parentheses
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[START_FIELD - 2])
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    """This boot of the machine (Linux); None elsewhere."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (any process: see ``Holder``)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process, or cannot tell: keep its files
    return True


@dataclass(frozen=True)
class Holder:
    """A process that writes: its host, pid, start time (clock ticks since boot; 0
    unknown) and boot id (None unknown)."""

    host: str
    pid: int
    start: int = 0
    boot: str | None = None

    @property
    def tag(self) -> str:
        """What a temporary's name carries: ``<pid>-<start>-<host>``."""
        return f"{self.pid}-{self.start}-{host_tag(self.host)}"

    def on_this_host(self) -> bool:
        return host_tag(self.host) == host_tag(host_name())

    def alive_here(self) -> bool:
        """On this host: its pid runs and started when it did (and the machine was not
        rebooted since, where both boots are known)."""
        here = boot_id()
        if self.boot and here and self.boot != here:
            return False
        if not pid_alive(self.pid):
            return False
        if not self.start:
            return True  # its start time is unknown: the pid alone decides
        started = start_ticks(self.pid)
        return started is None or started == self.start


_ME: dict[int, Holder] = {}  # by pid: a forked child is another holder


def me() -> Holder:
    """This process."""
    pid = os.getpid()
    if pid not in _ME:
        _ME.clear()
        _ME[pid] = Holder(host_name(), pid, start_ticks(pid) or 0, boot_id())
    return _ME[pid]


def from_tag(tag: str) -> Holder | None:
    """The holder a temporary's ``<pid>-<start>-<host>`` names (its host as tagged)."""
    pid, sep, rest = tag.partition("-")
    start, sep2, host = rest.partition("-")
    if not (sep and sep2 and pid.isdigit() and start.isdigit() and host):
        return None
    return Holder(host, int(pid), int(start))
