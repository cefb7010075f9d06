"""Reaching a Ray cluster: ``--ray ADDRESS`` (``local`` starts one here, ``auto`` joins the
one this machine belongs to, ``HOST:PORT`` a head node, ``ray://HOST:PORT`` through Ray
Client). The optional ``ray`` extra (``pip install "salcli[ray]"``) is imported here only,
when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from salcli.errors import (
    ClusterError,
    OptionError,
    escape,
    one_line,
    os_reason,
)
from salcli.options import RAY_LOCAL

RAY_INSTALL = 'pip install "salcli[ray]"'
CONNECT_TIMEOUT_S = 5.0  # seconds to reach a head node's port before giving up
OBJECT_STORE_BYTES = 128 * 2**20  # a local Ray's object store: results are small


def import_ray():
    """The ``ray`` module, or a UsageError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise OptionError("ray", f"needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


# --- connecting ----------------------------------------------------------------------


def connect(address: str) -> bool:
    """Connect this process to the Ray cluster at ``address`` (``local``: start one on
    this machine; ``auto``: the one this machine belongs to, or ``RAY_ADDRESS``;
    ``HOST:PORT``; ``ray://HOST:PORT``). True when this call connected (``disconnect``
    ends it); False when the process was connected already (that connection is used).
    A cluster that cannot be reached raises a ClusterError."""
    ray = import_ray()
    if ray.is_initialized():
        _ray_messages_to_stderr()
        return False
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401 - Ray Client's transport
        except ImportError:
            raise ClusterError(
                f"{{ray}} {escape(address)}: ray:// addresses go through Ray Client, which "
                'needs pip install "ray[client]==2.60.0"; or run salcli on a node of the '
                "cluster with {ray} auto",
                options=("ray",),
            ) from None
    elif address not in (RAY_LOCAL, "auto"):
        _probe(address)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,  # workers' warnings come back with their results
        "logging_level": logging.ERROR,
    }
    if address == RAY_LOCAL:
        kwargs["object_store_memory"] = OBJECT_STORE_BYTES
    main = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as err:
        if address == "auto":
            raise ClusterError(
                "{ray} auto: no Ray cluster runs on this machine (and RAY_ADDRESS is not "
                "set); start one with `ray start --head`, or use {ray} local",
                options=("ray",),
            ) from None
        raise _ray_error(address, one_line(err)) from None
    except Exception as err:  # noqa: BLE001 - a version mismatch, a refused client...
        raise _ray_error(address, f"{type(err).__name__}: {one_line(err)}") from None
    finally:
        if term is not None:  # ray.init sets its own SIGTERM handler (sys.exit)
            signal.signal(signal.SIGTERM, term)
    _ray_messages_to_stderr()
    return True


def disconnect() -> None:
    import ray

    ray.shutdown()


@contextlib.contextmanager
def session(address: str) -> Iterator[None]:
    """Connected to ``address`` for the block (an existing connection is kept open)."""
    owned = connect(address)
    try:
        yield
    finally:
        if owned:
            disconnect()


def _probe(address: str) -> None:
    """A ClusterError now, rather than Ray's minute of retries, when nothing listens."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise _ray_error(address, f"cannot reach the head node ({os_reason(err)})") from None


def _ray_error(address: str, reason: str) -> ClusterError:
    """A ClusterError about the cluster at ``address`` (``ray``)."""
    return ClusterError(f"{{ray}} {escape(address)}: {escape(reason)}", options=("ray",))


def _ray_messages_to_stderr() -> None:
    """Ray prints its raylets' messages (a worker died, a task is retried) on the
    driver's standard output, where ``--jsonl`` lines go: send them to stderr."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - another Ray layout: leave it as it is
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "salcli_stderr", False):
        return

    def to_stderr(data: dict, *args: Any, **kwargs: Any) -> None:
        original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.salcli_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr
