"""Downloads against HTTP servers started on 127.0.0.1: plain, broken mid-file, resumed,
mirrors, wrong checksums, offline; and `salcli weights download` through the CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import stat
import threading
from pathlib import Path

import pytest
import torch
import typer
from helpers import sub_app
from typer.testing import CliRunner

from salcli.cli import weights as cli_weights
from salcli.errors import WeightsError
from salcli.weights import download as dl

PAYLOAD_SIZE = 300_000  # bytes of the synthetic file served
_RANGE = re.compile(r"bytes=(\d+)-$")


def _payload(size: int = PAYLOAD_SIZE, seed: int = 7) -> bytes:
    return (
        torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(seed))
        .to(torch.uint8)
        .numpy()
        .tobytes()
    )


class FileServer:
    """Serves ``files`` (url path -> bytes) with optional misbehaviour, logs requests.

    ``break_after``: url path -> bytes sent before the connection is cut (for the next
    ``break_times`` requests of that path). ``no_range``: paths that ignore Range.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.break_after: dict[str, int] = {}
        self.break_times: dict[str, int] = {}
        self.no_range: set[str] = set()
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                rng = self.headers.get("Range")
                with server.lock:
                    server.log.append((self.path, rng))
                    data = server.files.get(self.path)
                    cut = None
                    if server.break_times.get(self.path, 0) > 0:
                        server.break_times[self.path] -= 1
                        cut = server.break_after[self.path]
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                m = _RANGE.match(rng or "")
                if m and self.path not in server.no_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def gets(self, path: str) -> list[str | None]:
        return [r for p, r in self.log if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_WAIT", 0.0)


def _dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_plain_download_with_full_checksum(server, tmp_path):
    data = _payload()
    server.files["/file.bin"] = data
    dest = tmp_path / "cache" / "w.pt"
    out = dl.download(server.url("/file.bin"), dest, sha256=hashlib.sha256(data).hexdigest())
    assert out == dest and dest.read_bytes() == data
    assert _leftovers(dest.parent) == ["w.pt"]  # no .part, no temporary
    assert server.gets("/file.bin") == [None]


@pytest.mark.parametrize(
    "umask, mode", [(0o022, 0o644), (0o002, 0o664)], ids=["umask-022", "umask-002"]
)
def test_downloaded_file_gets_the_umask_permissions(server, tmp_path, umask, mode):
    server.files["/file.bin"] = _payload(10_000)
    old = os.umask(umask)
    try:
        dest = dl.download(server.url("/file.bin"), tmp_path / "cache" / "w.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == mode


def test_prefix_checksum_and_progress(server, tmp_path):
    data = _payload()
    server.files["/s3d-abc.pth"] = data
    prefix = hashlib.sha256(data).hexdigest()[:8].upper()  # case does not matter
    seen = []
    dest = dl.download(
        server.url("/s3d-abc.pth"), tmp_path / "x.pth", sha256=prefix,
        on_progress=lambda *a: seen.append(a),
    )  # fmt: skip
    assert dest.read_bytes() == data
    assert seen[0] == ("x.pth", 0, len(data)) and seen[-1] == ("x.pth", len(data), len(data))
    assert [n for _, n, _ in seen] == sorted(n for _, n, _ in seen)


def test_broken_connection_resumes_with_range(server, tmp_path):
    data = _payload()
    server.files["/file.bin"] = data
    server.break_after["/file.bin"] = 100_000
    server.break_times["/file.bin"] = 2  # two breaks in a row, each after 100 kB
    dest = dl.download(
        server.url("/file.bin"),
        tmp_path / "w.pt",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    assert dest.read_bytes() == data
    assert server.gets("/file.bin") == [None, "bytes=100000-", "bytes=200000-"]
    assert _leftovers(tmp_path) == ["w.pt"]


def test_part_file_from_an_earlier_run_is_resumed(server, tmp_path):
    data = _payload()
    server.files["/file.bin"] = data
    dest = tmp_path / "w.pt"
    dl.part_path(dest).write_bytes(data[:123_456])  # what a killed run left
    dl.download(server.url("/file.bin"), dest)
    assert dest.read_bytes() == data
    assert server.gets("/file.bin") == ["bytes=123456-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = _payload()
    server.files["/file.bin"] = data
    server.no_range.add("/file.bin")
    dest = tmp_path / "w.pt"
    dl.part_path(dest).write_bytes(data[:5000])
    dl.download(server.url("/file.bin"), dest)
    assert dest.read_bytes() == data


def test_stale_part_failing_the_checksum_is_fetched_again_cleanly(server, tmp_path):
    data = _payload()
    server.files["/file.bin"] = data
    dest = tmp_path / "w.pt"
    dl.part_path(dest).write_bytes(b"\0" * 1000)  # a .part of some other file
    dl.download(server.url("/file.bin"), dest, sha256=hashlib.sha256(data).hexdigest())
    assert dest.read_bytes() == data
    assert server.gets("/file.bin") == ["bytes=1000-", None]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.files["/file.bin"] = _payload()
    dest = tmp_path / "w.pt"
    with pytest.raises(WeightsError) as err:
        dl.download(server.url("/file.bin"), dest, sha256="0" * 64)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "\n" not in msg and str(dest) in msg
    assert _leftovers(tmp_path) == []


def test_mirrors_are_tried_in_order(server, tmp_path):
    data = _payload()
    server.files["/b/file.bin"] = data
    urls = [_dead_url(), server.url("/a/file.bin"), server.url("/b/file.bin")]
    dest = dl.download(urls, tmp_path / "w.pt")
    assert dest.read_bytes() == data
    assert [p for p, _ in server.log] == ["/a/file.bin", "/b/file.bin"]  # 404, then good


def test_offline_is_one_clear_line(tmp_path):
    url = _dead_url()
    dest = tmp_path / "cache" / "soundnet8_final.pth"
    with pytest.raises(WeightsError) as err:
        dl.download([url], dest, timeout=2)
    msg = str(err.value)
    assert "\n" not in msg
    assert "unreachable" in msg and url in msg and f"put it at {dest}" in msg
    assert _leftovers(dest.parent) == []
    # the same reason from every mirror is said once
    with pytest.raises(WeightsError, match=r"\(2 mirrors, each unreachable \(") as err:
        dl.download([url, _dead_url()], dest, timeout=2)


def test_connection_breaking_without_progress_gives_up(server, tmp_path):
    server.files["/file.bin"] = _payload()
    server.break_after["/file.bin"] = 0
    server.break_times["/file.bin"] = 100
    with pytest.raises(WeightsError, match="broke 5 times"):
        dl.download(server.url("/file.bin"), tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()


def test_check_hook_can_refuse_the_file(server, tmp_path):
    server.files["/file.bin"] = b"<html>not a checkpoint</html>"

    def check(path: Path) -> None:
        raise WeightsError("no tensors")

    with pytest.raises(WeightsError, match="not a usable checkpoint"):
        dl.download(server.url("/file.bin"), tmp_path / "w.pt", check=check)
    assert _leftovers(tmp_path) == []


def test_verified_file_already_there_is_not_fetched(server, tmp_path):
    data = _payload()
    dest = tmp_path / "w.pt"
    dest.write_bytes(data)
    dl.download(server.url("/file.bin"), dest, sha256=hashlib.sha256(data).hexdigest())
    assert server.log == []


def test_concurrent_downloads_of_one_file_fetch_it_once(server, tmp_path):
    data = _payload()
    server.files["/file.bin"] = data
    digest = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "w.pt"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            dl.download(server.url("/file.bin"), dest, sha256=digest)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and dest.read_bytes() == data
    assert len(server.gets("/file.bin")) == 1


def test_bad_checksum_text_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="SHA-256"):
        dl.download("http://127.0.0.1:9/x", tmp_path / "w.pt", sha256="not-hex")


# ---------------------------------------------------------------------------
# `salcli weights download` through the CLI, with a registry pointing at the server
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soundnet_file(tmp_path_factory) -> tuple[bytes, str]:
    """A real SoundNet-8 state_dict as the published soundnet8_final.pth is saved."""
    from salcli.models.soundnet import SoundNet8

    path = tmp_path_factory.mktemp("sn") / "soundnet8_final.pth"
    torch.manual_seed(0)
    torch.save(SoundNet8().state_dict(), path)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _app() -> typer.Typer:
    return sub_app(cli_weights.register)


def _registry(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"format": 1, "entries": entries}))
    return path


def test_cli_download_lands_a_verified_checkpoint(server, tmp_path, monkeypatch, soundnet_file):
    data, digest = soundnet_file
    server.files["/soundnet8_final.pth"] = data
    server.break_after["/soundnet8_final.pth"] = 10_000_000
    server.break_times["/soundnet8_final.pth"] = 1
    cache = tmp_path / "cache"
    entry = {
        "name": "test-soundnet",
        "arch": "soundnet",
        "file": "test_soundnet.pth",
        "urls": [server.url("/missing.pth"), server.url("/soundnet8_final.pth")],
        "sha256": digest,
    }
    monkeypatch.setenv("SALCLI_WEIGHTS", str(cache))
    monkeypatch.setenv("SALCLI_REGISTRY", str(_registry(tmp_path, [entry])))
    result = CliRunner().invoke(_app(), ["weights", "download", "test-soundnet", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (cache / "test_soundnet.pth").read_bytes() == data
    assert "downloaded" in result.output
    assert server.gets("/soundnet8_final.pth") == [None, "bytes=10000000-"]
    # a second run finds it in the cache and fetches nothing
    again = CliRunner().invoke(_app(), ["weights", "download", "test-soundnet"])
    assert again.exit_code == 0 and "already in the cache" in again.output
    assert len(server.gets("/soundnet8_final.pth")) == 2


def test_cli_download_of_wrong_architecture_is_refused(
    server, tmp_path, monkeypatch, soundnet_file
):
    server.files["/w.pth"] = soundnet_file[0]
    cache = tmp_path / "cache"
    entry = {
        "name": "fake-vinet",
        "arch": "vinet",
        "file": "fake.pt",
        "urls": [server.url("/w.pth")],
    }
    monkeypatch.setenv("SALCLI_WEIGHTS", str(cache))
    monkeypatch.setenv("SALCLI_REGISTRY", str(_registry(tmp_path, [entry])))
    result = CliRunner().invoke(_app(), ["weights", "download", "fake-vinet", "--no-progress"])
    assert result.exit_code == 3
    assert "soundnet weights, not vinet" in result.output
    assert list(cache.iterdir()) == []


def test_cli_offline_download_is_one_line(tmp_path, monkeypatch):
    url = _dead_url()
    entry = {"name": "far-away", "arch": "soundnet", "file": "far.pth", "urls": [url]}
    monkeypatch.setenv("SALCLI_WEIGHTS", str(tmp_path / "cache"))
    monkeypatch.setenv("SALCLI_REGISTRY", str(_registry(tmp_path, [entry])))
    result = CliRunner().invoke(_app(), ["weights", "download", "far-away", "--no-progress"])
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("salcli: error: could not download far.pth")
    assert url in lines[0] and str(tmp_path / "cache" / "far.pth") in lines[0]
    assert "Traceback" not in result.output


def test_cli_manual_entry_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SALCLI_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SALCLI_REGISTRY", raising=False)
    result = CliRunner().invoke(_app(), ["weights", "download", "vinet-dhf1k"])
    assert result.exit_code == 3
    assert "github.com/samyak0210/ViNet" in result.output
    assert "salcli weights import FILE --name vinet-dhf1k" in result.output
