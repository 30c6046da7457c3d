"""Download model files, e.g. NVIDIA's TAO BodyPoseNet from NGC, with a size and checksum check.

    from edgepose.download import download, ngc_url
    path = download(ngc_url("nvidia/tao/bodyposenet", "deployable_v1.0.1", "model.etlt"), "models/")

The file is streamed to a new temporary ``<name>.*.part`` file beside the destination and renamed
only when complete (and, when ``sha256`` is given, verified), so an interrupted download never
leaves a file that looks whole, and no file of the user's is touched. "Complete" is judged by the
server's ``Content-Length`` (and by chunked transfer framing); a server that sends neither ends the
body by closing the connection, which a cut transfer does too: then only ``sha256`` can tell, and
without it a :class:`DownloadWarning` says so. Missing destination folders are created. NVIDIA's models come under
NVIDIA's model licence: read it on the model's NGC page before use. Only the standard library is
used (``urllib``); proxies follow the usual environment variables.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

from .errors import EdgePoseError

__all__ = ["DownloadError", "DownloadWarning", "NGC_API", "download", "ngc_url"]

NGC_API = "https://api.ngc.nvidia.com/v2/models"
_CHUNK = 1 << 20


class DownloadError(EdgePoseError):
    """A download failed: HTTP error, network error, a short file or a checksum mismatch."""


class DownloadWarning(UserWarning):
    """A download that may be incomplete: the server gave no size and no ``sha256`` was given."""


def ngc_url(model: str, version: str, file: str) -> str:
    """The NGC API URL of one file of a model version.

    Args:
        model: ``org/team/name`` or ``org/name`` (e.g. ``nvidia/tao/bodyposenet``).
        version: e.g. ``deployable_v1.0.1``.
        file: the file inside the version, e.g. ``model.etlt``.
    """
    parts = [p for p in model.split("/") if p]
    if len(parts) not in (2, 3) or not version or not file:
        raise ValueError(f"model must be 'org/team/name' or 'org/name' and version and file non-empty; got "
                         f"{model!r}, {version!r}, {file!r}")
    # The form TAO's notebooks fetch with wget (not checked against NGC from here: no internet access).
    path = "/".join(parts)
    quote = urllib.parse.quote
    return f"{NGC_API}/{path}/versions/{quote(version)}/files/{quote(file)}"


def download(url: str, dest: Union[str, os.PathLike[str]], *, sha256: Optional[str] = None,
             overwrite: bool = False, timeout: float = 60.0,
             progress: Optional[Callable[[int, Optional[int]], None]] = None) -> Path:
    """Download ``url`` to ``dest`` (a file path, or a folder: the URL's file name is used).

    Args:
        url: ``http://`` or ``https://`` URL.
        dest: where to write: a file path, an existing folder, or a path ending in ``/`` (a folder).
            Missing folders are created.
        sha256: expected hex digest; a mismatch deletes the partial file and raises.
        overwrite: replace an existing file (otherwise an existing file is returned as is after the
            checksum, when given, matches).
        timeout: seconds per network operation.
        progress: called as ``progress(bytes_done, total_or_None)`` after each chunk.

    Raises:
        DownloadError: HTTP status, network failure, fewer bytes than announced, checksum mismatch,
            a destination folder that cannot be made (a file is in the way).
        ValueError: a URL that is not http(s).

    Warns:
        DownloadWarning: the server announced no (numeric) size and ``sha256`` is None, so a transfer
            the server cut short cannot be told from a whole one; pass ``sha256`` to be sure.
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"url: only http(s) URLs are downloaded, got {url!r}")
    as_folder = str(dest).endswith(("/", os.sep))
    dest = Path(dest)
    if as_folder or dest.is_dir():
        _make_folder(dest)
        name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
        if not name:
            raise ValueError(f"url {url!r} has no file name; pass a file path as dest")
        dest = dest / name
    if dest.exists() and not overwrite:
        if sha256 is not None and _sha256(dest) != sha256.lower():
            raise DownloadError(f"{dest} exists and its sha256 is not {sha256}; pass overwrite=True to download again")
        return dest
    _make_folder(dest.parent)
    # A fresh temporary name beside dest (same file system, so the final rename is atomic); a file
    # the user already has, whatever its name, is never written or deleted.
    fd, part_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    part = Path(part_name)
    digest = hashlib.sha256()
    done = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "edgepose"})
        with urllib.request.urlopen(request, timeout=timeout) as response, os.fdopen(fd, "wb") as f:
            fd = -1  # owned by f now
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise DownloadError(f"{url}: got {done} of {total} bytes (connection closed early); try again")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DownloadError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
        if total is None and sha256 is None:
            warnings.warn(f"{url}: the server sent no usable Content-Length, so edgepose cannot tell whether the "
                          f"{done} bytes received are the complete file; pass sha256= to verify it", DownloadWarning,
                          stacklevel=2)
        os.chmod(part, 0o644)  # mkstemp makes it private; a downloaded model is an ordinary file
        os.replace(part, dest)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}"
                            + (" (NGC: check the model name, version and file)" if e.code == 404 else "")) from None
    except urllib.error.URLError as e:
        raise DownloadError(f"{url}: cannot connect ({e.reason})") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: network error ({e})") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if part.exists():
            part.unlink()
    return dest


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise DownloadError(f"cannot create the folder {folder}: {blocker} is a file, not a folder") from None
    except OSError as e:
        raise DownloadError(f"cannot create the folder {folder}: {e.strerror or e}") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
