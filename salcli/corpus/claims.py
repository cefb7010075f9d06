"""Claims: each video of a corpus computed once, however many runs work on it at once.

Before any work on a video, a run *claims* it: a hidden file ``.<stem>.salcli.claim``
beside its outputs (``salcli.media.records.claim_path``) that names the holder (host,
pid, process start time, boot: ``salcli.identity.Holder``), the run and when it began,
with a random token. The file's modification time is the holder's heartbeat, refreshed
every ``lease / HEARTBEATS_PER_LEASE`` seconds by a thread while the video is computed.
The claim is removed once the record is written or the video has failed; a run that
meets a live claim leaves the video to its holder (status ``claimed``).

A claim is **stale** when its holder is gone: on the same host when no process runs with
its pid and start time (a pid given again to another process does not keep it alive); a
claim from another host when its heartbeat is older than the lease (``--lease``: well
above the heartbeat period, so a slow file system or a loaded machine does not lose its
claims). A stale claim is taken over by one run at a time: the run first creates the
take-over lock ``.<stem>.salcli.claim.lock`` (as a claim is created, below), then reads
the claim again and removes it only if it is still the stale claim it read (its token
and inode), then releases the lock and creates its own claim like any run. A live claim
is never moved or removed by another run, so of several runs racing exactly one holds
the video. A lock whose holder died mid-take-over is stale by the same rule and is
moved aside (renamed, then removed if it is still that lock).

Creating a claim is a hard link of a complete file (written under a temporary name) to
the claim's name: ``link`` fails when the name exists, atomically on local disks and on
NFS (every version), and readers never see a half-written claim. ``O_EXCL`` is atomic on
NFS only from NFSv3 on a Linux 2.6 client, and a claim made with it is empty until
written; it is the fallback where the file system has no hard links. On NFS a lost reply
to a ``link`` that did succeed is recognised by the temporary's link count (2).

A holder checks its claim at each heartbeat and before its outputs and record replace
anything: a claim taken over (its heartbeat was late by more than a lease) stops the
video (``ClaimLost``), its partial outputs removed, so two runs never both write one video.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from salcli import identity
from salcli.defaults import CLAIM_LOCK_SUFFIX, DEFAULT_LEASE_S, HEARTBEATS_PER_LEASE
from salcli.files import kill_point, make_folder, temp_name
from salcli.identity import Holder, me
from salcli.media.records import claim_path, missing_parents, remove_empty

TAKEOVER_TRIES = 8  # looks at a claim that keeps changing under a take-over, at most
# link() errors that mean "no hard links here": fall back to O_EXCL
NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}
CLAIM_TOKEN_BYTES = 8


def new_run_id() -> str:
    """A run's id, recorded in its claims and records."""
    return uuid.uuid4().hex[:12]


class ClaimLost(BaseException):
    """The claim of the video being computed was taken over by another run (its heartbeat
    was late by more than the lease): the video stops, its partial outputs removed. A
    BaseException, so that the video's error handling lets it through."""


@dataclass(frozen=True)
class ClaimInfo:
    """A claim as another process reads it."""

    path: Path
    holder: Holder
    run: str
    source: str | None  # the video, as the holder named it
    since: float  # seconds since the epoch
    token: str | None  # None: unreadable (being written without hard links, or damaged)
    heartbeat: float  # the file's modification time
    inode: tuple[int, int, int]  # (device, inode, mtime ns): which file it is

    def age(self) -> float:
        """Seconds since the holder's last heartbeat."""
        return max(0.0, identity.now() - self.heartbeat)

    def stale(self, lease_s: float) -> bool:
        """Its holder is gone (see the module docstring)."""
        if self.holder.host and self.holder.on_this_host():
            return not self.holder.alive_here()
        return self.age() > lease_s

    def describe(self) -> str:
        return describe_holder(self.as_dict())

    def as_dict(self) -> dict:
        return {
            "host": self.holder.host,
            "pid": self.holder.pid,
            "run": self.run,
            "source": self.source,
            "since": self.since,
            "heartbeat_age": round(self.age(), 3),
        }


def describe_holder(holder: dict) -> str:
    """One line from ``ClaimInfo.as_dict()``: who, which run, since when, last heartbeat."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(holder.get("since") or 0))
    return (
        f"held by {holder.get('host') or '?'}:{holder.get('pid') or '?'} "
        f"(run {holder.get('run') or '?'}) since {when}, heartbeat "
        f"{holder.get('heartbeat_age', 0):.0f} s ago"
    )


def read_claim(path: Path) -> ClaimInfo | None:
    """The claim at ``path``, or None when there is none."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        raw, st = b"", None
        with contextlib.suppress(OSError):
            st = os.stat(path)
        if st is None:
            return None
    try:
        data = json.loads(raw)
        holder = Holder(str(data["host"]), int(data["pid"]), int(data.get("start") or 0),
                        data.get("boot"))  # fmt: skip
        run, since, token = str(data.get("run", "")), float(data["since"]), str(data["token"])
        source = data.get("source")
    except (ValueError, KeyError, TypeError):
        # no holder to ask: the heartbeat alone decides
        holder, run, since, token, source = Holder("", 0), "", st.st_mtime, None, None
    return ClaimInfo(path, holder, run, source, since, token, st.st_mtime,
                     (st.st_dev, st.st_ino, st.st_mtime_ns))  # fmt: skip


def live_claim(out_dir: Path, stem: str, lease_s: float = DEFAULT_LEASE_S) -> ClaimInfo | None:
    """The live claim on ``stem`` in ``out_dir``, or None (none, or stale)."""
    info = read_claim(claim_path(out_dir, stem))
    return None if info is None or info.stale(lease_s) else info


@dataclass
class Claim:
    """A claim this process holds. ``taken_over``: the stale claim it replaced (a dead
    run's temporaries may be there); ``created``: output folders made for it."""

    path: Path
    stem: str
    token: str
    taken_over: ClaimInfo | None = None
    created: list[Path] = field(default_factory=list)
    lost: threading.Event = field(default_factory=threading.Event)


def _create(path: Path, content: bytes) -> bool:
    """Create ``path`` holding ``content`` if no file has that name; False if one has."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(content)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno in NO_LINKS:
                return _create_exclusive(path, content)
            if os.stat(tmp).st_nlink == 2:  # NFS: the link was made, its reply lost
                return True
            raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _create_exclusive(path: Path, content: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return True


def _set_aside(stale: ClaimInfo) -> bool:
    """Take ``stale`` (a take-over lock whose run died) away from its name, if it is still
    there (one of several runs racing succeeds); a newer lock moved by mistake is put
    back. True when taken."""
    aside = temp_name(stale.path, "old")
    try:
        os.rename(stale.path, aside)
    except FileNotFoundError:
        return False  # another run took it first
    moved = read_claim(aside)
    try:
        if moved is None or (moved.token, moved.inode) != (stale.token, stale.inode):
            with contextlib.suppress(OSError):
                os.link(aside, stale.path)  # a live claim made meanwhile: back it goes
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()


def takeover_lock_path(claim: Path) -> Path:
    """The take-over lock of the claim at ``claim``: ``.<stem>.salcli.claim.lock``."""
    return claim.with_name(claim.name + CLAIM_LOCK_SUFFIX)


class Claims:
    """The claims of one run (``run``: its id) in one process: ``acquire`` and
    ``release`` each video's, a heartbeat thread refreshing those held, ``check`` and
    ``verify`` for the video being computed. ``close()`` ends the thread (claims still
    held are released)."""

    def __init__(self, run: str | None = None, lease_s: float = DEFAULT_LEASE_S):
        self.run = run or new_run_id()
        self.lease_s = float(lease_s)
        self.heartbeat_s = self.lease_s / HEARTBEATS_PER_LEASE
        self._held: dict[Path, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back ------------------------------------------------------

    def acquire(self, out_dir: Path, stem: str, source: str | None = None) -> Claim | ClaimInfo:
        """Claim ``stem`` (the video ``source``) in ``out_dir``: our ``Claim``, or the
        live claim of another run (stale ones are taken over). An ``OutputError`` when
        ``out_dir`` cannot be created."""
        out_dir = Path(out_dir)
        path = claim_path(out_dir, stem)
        created = missing_parents(out_dir)
        make_folder(out_dir)
        taken: ClaimInfo | None = None
        info: ClaimInfo | None = None
        for _ in range(TAKEOVER_TRIES):
            info = read_claim(path)
            if info is not None:
                if not info.stale(self.lease_s):
                    break
                if not self._take_over(info):
                    continue
                taken = info
            token = secrets.token_hex(CLAIM_TOKEN_BYTES)
            if _create(path, self._content(token, source)):
                claim = Claim(path, stem, token, taken_over=taken, created=created)
                self._hold(claim)
                return claim
        remove_empty(created)
        return info if info is not None else read_claim(path) or self._unknown(path)

    def _take_over(self, stale: ClaimInfo) -> bool:
        """Remove ``stale`` from its name under the take-over lock, if it is still there;
        True when this run removed it. A lock held by a dead run is set aside (False:
        look again)."""
        lock = takeover_lock_path(stale.path)
        token = secrets.token_hex(CLAIM_TOKEN_BYTES)
        if not _create(lock, self._content(token, None)):
            held = read_claim(lock)
            if held is not None and held.stale(self.lease_s):
                _set_aside(held)
            return False
        try:
            now = read_claim(stale.path)
            if now is None or (now.token, now.inode) != (stale.token, stale.inode):
                return False  # taken over, or given back, meanwhile
            kill_point("takeover", stale.path.name)
            try:
                stale.path.unlink()
            except FileNotFoundError:
                return False
            return True
        finally:
            mine = read_claim(lock)
            if mine is not None and mine.token == token:
                with contextlib.suppress(OSError):
                    lock.unlink()

    def _unknown(self, path: Path) -> ClaimInfo:
        """A claim that kept changing under ``TAKEOVER_TRIES`` looks: held by others."""
        t = identity.now()
        return ClaimInfo(path, Holder("", 0), "", None, t, None, t, (0, 0, 0))

    def _content(self, token: str, source: str | None) -> bytes:
        who = me()
        data = {
            **{"host": who.host, "pid": who.pid, "start": who.start, "boot": who.boot},
            **{"run": self.run, "since": identity.now(), "token": token, "source": source},
        }
        return (json.dumps(data, sort_keys=True) + "\n").encode()

    def release(self, claim: Claim, *, keep_folders: bool = True) -> None:
        """Give ``claim`` back (its file removed if it is still ours); the output folders
        made for it are removed when empty unless ``keep_folders``."""
        with self._lock:
            self._held.pop(claim.path, None)
        info = read_claim(claim.path)
        if info is not None and info.token == claim.token:
            with contextlib.suppress(OSError):
                claim.path.unlink()
        if not keep_folders:
            remove_empty(claim.created)

    def clear_stale(self, out_dir: Path, stem: str) -> bool:
        """Take over and release the claim on ``stem`` if it is stale (a worker's process
        died on it); True when there was one."""
        info = read_claim(claim_path(out_dir, stem))
        if info is None or not info.stale(self.lease_s):
            return False
        got = self.acquire(out_dir, stem)
        if isinstance(got, Claim):
            self.release(got)
        return True

    # -- while computing -----------------------------------------------------------------

    def check(self, claim: Claim) -> None:
        """Raise ``ClaimLost`` if the heartbeat found ``claim`` taken over."""
        if claim.lost.is_set():
            raise ClaimLost(claim.stem)

    def verify(self, claim: Claim) -> None:
        """Read ``claim`` now; raise ``ClaimLost`` if it is no longer ours (before the
        outputs or the record replace anything)."""
        info = read_claim(claim.path)
        if info is None or info.token != claim.token:
            claim.lost.set()
        self.check(claim)

    def _hold(self, claim: Claim) -> None:
        with self._lock:
            self._held[claim.path] = claim
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name="salcli-claims", daemon=True
                )
                self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                held = list(self._held.values())
            for claim in held:
                self.heartbeat(claim)

    def heartbeat(self, claim: Claim) -> None:
        """Refresh ``claim``'s heartbeat, or mark it lost if it is no longer ours."""
        info = read_claim(claim.path)
        if info is None or info.token != claim.token:
            claim.lost.set()
            return
        with contextlib.suppress(OSError):
            os.utime(claim.path)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 1.0)
            self._thread = None
        with self._lock:
            held = list(self._held.values())
        for claim in held:
            self.release(claim)
