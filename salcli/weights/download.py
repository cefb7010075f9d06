"""Downloading weights over HTTP(S), with the standard library only.

Conventions:

- The file is streamed to ``DEST.part`` in the destination's own folder and moved onto
  ``DEST`` with ``os.replace`` only once it is complete and verified, so ``DEST`` is either
  absent or whole, never half-written. Both get the user's umask, like any file they
  create (a shared cache stays shared).
- An interrupted transfer (connection broken mid-file, read timeout) resumes with an HTTP
  ``Range: bytes=N-`` request, within the same call and across calls (the ``.part`` file
  stays). A server that answers a range request with the whole file (200) is restarted
  from byte 0.
- ``sha256`` is the full hex digest (64 digits) or a leading part of it (torchvision
  names its files after the first 8 digits); a file that does not match is deleted.
- Mirrors (``urls``) are tried in order; the first that yields a verified file wins.
  When none does, a one-line :class:`WeightsError` says what to fetch and where to put it.
- One process at a time downloads a given ``DEST`` (an advisory lock on ``DEST.lock``,
  where the OS has ``fcntl``); the others wait and then reuse its verified file.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from salcli.errors import OutputError, WeightsError, one_line
from salcli.models.checkpoints import sha256_file

# on_progress(file name, bytes so far, total bytes or None): a download's progress
Progress = Callable[[str, int, int | None], None]

try:  # POSIX only; elsewhere concurrent downloads of one file are simply not guarded
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

CHUNK = 1 << 20  # bytes per read and write
DEFAULT_TIMEOUT = 30.0  # s, per socket operation (connect, each read)
MAX_STALLS = 5  # interrupted attempts in a row that gained no byte before a mirror is dropped
RETRY_WAIT = 1.0  # s, pause before the n-th attempt in a row without progress (times n)
PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"
USER_AGENT = "salcli-weights/1 (+python-urllib)"

_HEX = re.compile(r"^[0-9a-f]{1,64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# What a broken or stalled connection raises while reading the body.
_NET_ERRORS = (http.client.HTTPException, OSError)


class _Interrupted(Exception):
    """The connection broke mid-file; what was received is kept in the .part file."""


class _MirrorFailed(Exception):
    """This URL cannot give the file; try the next mirror."""


def part_path(dest: str | Path) -> Path:
    """Where the download of ``dest`` is staged: ``DEST.part`` beside it."""
    dest = Path(dest)
    return dest.with_name(dest.name + PART_SUFFIX)


def normalize_checksum(sha256: str | None) -> str | None:
    """A full or partial SHA-256 as lowercase hex, or None; anything else is refused."""
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _HEX.match(value):
        raise WeightsError(f"not a SHA-256 hex digest (or a leading part of one): {sha256!r}")
    return value


def checksum_matches(digest: str, expected: str | None) -> bool:
    """True when ``digest`` (64 hex digits) equals ``expected`` or starts with it."""
    return expected is None or digest.lower().startswith(expected.lower())


def download(
    urls: str | Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    on_progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Fetch ``dest`` from the first of ``urls`` that works; return ``dest``.

    ``sha256``: full or leading hex digits of the expected digest (None: not checked).
    ``on_progress(file name, bytes so far, total or None)``: after each chunk received.
    ``timeout``: seconds per socket operation.
    ``check(part)``: an extra test of the complete file before it lands (raise
    ``WeightsError`` to refuse it). A ``dest`` already present with a matching (known)
    checksum is kept and not downloaded again.
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    if not url_list:
        raise WeightsError(f"no URL is known for {dest.name}: put the file at {dest}")
    expected = normalize_checksum(sha256)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {dest.parent}: {exc.strerror or exc}") from None
    part = part_path(dest)
    with _exclusive(dest):
        if expected and dest.is_file() and checksum_matches(sha256_file(dest), expected):
            return dest  # another process (or an earlier run) already landed it
        failures: list[tuple[str, str]] = []  # (url, reason)
        for url in url_list:
            try:
                _download_one(url, dest, part, expected, on_progress, timeout, check)
                return dest
            except _MirrorFailed as exc:
                failures.append((url, str(exc)))
    reasons = {reason for _, reason in failures}
    if len(failures) > 1 and len(reasons) == 1:
        why = f"{len(failures)} mirrors, each {reasons.pop()}"
    else:
        why = "; ".join(f"{_short(url)}: {reason}" for url, reason in failures)
    raise WeightsError(
        f"could not download {dest.name} ({why}); "
        f"fetch {url_list[0]} by other means and put it at {dest}"
    )


def _download_one(
    url: str,
    dest: Path,
    part: Path,
    expected: str | None,
    on_progress: Progress | None,
    timeout: float,
    check: Callable[[Path], None] | None,
) -> None:
    """One mirror: transfer (resuming), verify, land. Raises _MirrorFailed."""
    resumed_stale = part.is_file() and part.stat().st_size > 0
    for _ in range(2):  # a second, clean try when a resumed stale .part fails the checksum
        _transfer(url, part, dest.name, on_progress, timeout)
        digest = sha256_file(part)
        if checksum_matches(digest, expected):
            break
        _unlink(part)
        if not resumed_stale:
            raise _MirrorFailed(
                f"checksum mismatch: got sha256 {digest[:16]}..., expected {expected}"
            )
        resumed_stale = False
    if check is not None:
        try:
            check(part)
        except WeightsError as exc:
            _unlink(part)
            raise _MirrorFailed(f"not a usable checkpoint ({exc})") from None
    os.replace(part, dest)


def _transfer(
    url: str, part: Path, label: str, on_progress: Progress | None, timeout: float
) -> None:
    """Bring ``part`` to the full file: append from its size, resume after breaks."""
    stalls = 0
    broke_before = False
    while True:
        offset = part.stat().st_size if part.is_file() else 0
        try:
            _attempt(url, part, offset, label, on_progress, timeout)
            return
        except _Interrupted as exc:
            gained = exc.args[0]
        except _MirrorFailed:
            if not broke_before:
                raise
            gained = 0  # the server went away after a break: keep trying for a while
        broke_before = True
        stalls = 0 if gained else stalls + 1
        if stalls >= MAX_STALLS:
            raise _MirrorFailed(f"the connection broke {MAX_STALLS} times without progress")
        time.sleep(RETRY_WAIT * stalls)


def _attempt(
    url: str, part: Path, offset: int, label: str, on_progress: Progress | None, timeout: float
) -> int:
    """One HTTP request; returns the bytes gained, or raises _Interrupted(gained)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # range past the end: the .part is not of this file
            _unlink(part)
            return _attempt(url, part, 0, label, on_progress, timeout)
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _MirrorFailed(f"unreachable ({one_line(exc.reason)})") from None
    except _NET_ERRORS as exc:
        raise _MirrorFailed(f"unreachable ({one_line(exc)})") from None
    with response:
        start, total = _span(response, offset)
        if start not in (0, offset):  # a span we did not ask for
            if not offset:
                raise _MirrorFailed("the server answered a plain request with a partial file")
            restart = True
        else:
            restart = False
            if start != offset:  # the server ignored the range and sends the whole file
                _unlink(part)
                offset = 0
            got = _receive(response, part, offset, total, label, on_progress)
    if restart:
        _unlink(part)
        return _attempt(url, part, 0, label, on_progress, timeout)
    return got


def _receive(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    label: str,
    on_progress: Progress | None,
) -> int:
    """Append the body to ``part`` (which holds ``offset`` bytes); bytes gained."""
    length = None if total is None else total - offset
    got = 0
    if on_progress is not None:
        on_progress(label, offset, total)
    with open(part, "ab" if offset else "wb") as out:
        while True:
            try:
                chunk = response.read(CHUNK)
            except _NET_ERRORS:
                raise _Interrupted(got) from None
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as exc:
                raise OutputError(f"cannot write {part}: {exc.strerror or exc}") from None
            got += len(chunk)
            if on_progress is not None:
                on_progress(label, offset + got, total)
    if length is not None and got < length:
        raise _Interrupted(got)
    return got


def _span(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """(first byte, total file size or None) of what the server is sending."""
    size = response.headers.get("Content-Length")
    if response.status == 206:
        m = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        if m:
            total = None if m.group(3) == "*" else int(m.group(3))
            return int(m.group(1)), total
        if offset and size is not None:  # no Content-Range: trust it is what we asked for
            return offset, offset + int(size)
        return -1, None  # a partial answer we cannot place: start over
    return 0, (int(size) if size is not None and size.isdigit() else None)


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """Hold an advisory lock on ``DEST.lock`` (waits while another process downloads).

    The lock file is removed on release; a waiter that wakes up holding a lock on a
    removed file takes a fresh one, so two processes never hold it at once.
    """
    if fcntl is None:
        yield
        return
    lock_path = dest.with_name(dest.name + LOCK_SUFFIX)
    while True:
        try:
            handle = open(lock_path, "a+b")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise OutputError(f"cannot write in {dest.parent}: {exc.strerror or exc}") from None
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # the holder before us removed that file: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        handle.close()  # releases the lock


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."
