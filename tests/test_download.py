"""The download helper against a local HTTP server on 127.0.0.1 (never the internet): whole files,
checksums, HTTP errors, a connection closed early, no partial file left behind, NGC URLs."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from edgepose.download import DownloadError, DownloadWarning, download, ngc_url

BODY = bytes(range(256)) * 5000  # 1.28 MB: more than one chunk


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path.endswith("/model.etlt"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path.endswith("/short.etlt"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:1000])  # then the connection closes
            self.close_connection = True
        elif self.path.endswith("/nolength.etlt") or self.path.endswith("/badlength.etlt"):
            # HTTP/1.0 without a (usable) Content-Length: the body ends where the connection does.
            self.send_response(200)
            if "badlength" in self.path:
                self.send_header("Content-Length", "about a megabyte")
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        elif self.path.endswith("/chunked-cut.etlt"):
            # HTTP/1.1 chunked, cut inside a chunk: the client can tell the transfer is incomplete.
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(BODY) + BODY[:5000])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_download_whole_file_with_checksum_and_progress(server: str, tmp_path: Path) -> None:
    seen: List[Tuple[int, object]] = []
    digest = hashlib.sha256(BODY).hexdigest()
    path = download(f"{server}/v/model.etlt", tmp_path, sha256=digest, progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "model.etlt" and path.read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY)) and len(seen) >= 2
    # An existing file is kept (and checked) unless overwrite=True.
    assert download(f"{server}/v/model.etlt", path, sha256=digest) == path
    with pytest.raises(DownloadError, match="exists and its sha256"):
        download(f"{server}/v/model.etlt", path, sha256="0" * 64)
    assert download(f"{server}/v/model.etlt", path, overwrite=True).read_bytes() == BODY


def test_download_failures_leave_nothing_behind(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="sha256 .* does not match"):
        download(f"{server}/v/model.etlt", tmp_path / "bad.etlt", sha256="ab" * 32)
    with pytest.raises(DownloadError, match="HTTP 404.*NGC: check"):
        download(f"{server}/v/missing.etlt", tmp_path / "missing.etlt")
    with pytest.raises(DownloadError, match="got 1000 of 1280000 bytes|network error"):
        download(f"{server}/v/short.etlt", tmp_path / "short.etlt")
    assert list(tmp_path.iterdir()) == []  # no partial or unverified file
    with pytest.raises(DownloadError, match="cannot connect"):
        download("http://127.0.0.1:9/model.etlt", tmp_path / "x.etlt", timeout=5)  # port 9: nothing listens
    with pytest.raises(ValueError, match="only http"):
        download("file:///etc/passwd", tmp_path / "x")


def test_ngc_urls() -> None:
    assert ngc_url("nvidia/tao/bodyposenet", "deployable_v1.0.1", "model.etlt") == (
        "https://api.ngc.nvidia.com/v2/models/nvidia/tao/bodyposenet/versions/deployable_v1.0.1/files/"
        "model.etlt")
    url = ngc_url("nvidia/bodyposenet", "v1", "a b.onnx")
    assert url.endswith("/models/nvidia/bodyposenet/versions/v1/files/a%20b.onnx")
    with pytest.raises(ValueError, match="org/team/name"):
        ngc_url("bodyposenet", "v1", "model.etlt")


def test_a_users_part_file_is_left_alone(server: str, tmp_path: Path) -> None:
    """A file the user already has beside the destination, named like a partial file, survives a
    download and a failed one."""
    mine = tmp_path / "model.etlt.part"
    mine.write_bytes(b"the user's own file")
    path = download(f"{server}/v/model.etlt", tmp_path / "model.etlt")
    assert path.read_bytes() == BODY
    with pytest.raises(DownloadError):
        download(f"{server}/v/short.etlt", tmp_path / "short.etlt")
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.etlt", "model.etlt.part"]


@pytest.mark.parametrize("name", ["nolength.etlt", "badlength.etlt"])
def test_download_without_a_size_warns_unless_a_checksum_is_given(server: str, tmp_path: Path, name: str) -> None:
    # Nothing tells a whole transfer from one the server cut short: say so, and point at sha256.
    with pytest.warns(DownloadWarning, match=r"no usable Content-Length.*cannot tell.*complete.*sha256"):
        path = download(f"{server}/v/{name}", tmp_path / name)
    assert path.read_bytes() == BODY
    digest = hashlib.sha256(BODY).hexdigest()
    assert download(f"{server}/v/{name}", tmp_path / "checked.etlt", sha256=digest).read_bytes() == BODY  # no warning
    with pytest.raises(DownloadError, match="sha256"):
        download(f"{server}/v/{name}", tmp_path / "bad.etlt", sha256="0" * 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "checked.etlt"])


def test_a_chunked_transfer_cut_by_connection_close_is_an_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="network error|connection closed early"):
        download(f"{server}/v/chunked-cut.etlt", tmp_path / "cut.etlt")
    assert list(tmp_path.iterdir()) == []


def test_missing_destination_folders_are_created(server: str, tmp_path: Path) -> None:
    # A folder named with a trailing slash, as in the README (download(url, "models/")).
    folder = tmp_path / "models"
    path = download(f"{server}/v/model.etlt", str(folder) + "/")
    assert path == folder / "model.etlt" and path.read_bytes() == BODY
    deep = tmp_path / "a" / "b" / "m.etlt"
    assert download(f"{server}/v/model.etlt", deep).read_bytes() == BODY
    # A file where a folder is needed is a clear error, not a FileNotFoundError / NotADirectoryError.
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError, match="file.*not a folder"):
        download(f"{server}/v/model.etlt", tmp_path / "file" / "m.etlt")
