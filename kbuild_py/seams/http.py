"""The HTTP seam: download one URL to a file, with a size cap and an overall deadline.

Everything kmod-py fetches from a Debian mirror goes through an `Http`; unit tests pass a
fake (a dict of URL -> bytes), the real one is urllib. A file larger than `max_bytes`
(the size the signed index lists) is cut off and refused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

from kbuild_py import progress
from kbuild_py.errors import MirrorError, VerificationError

HTTP_TIMEOUT = 60.0  # seconds a socket may stay silent
USER_AGENT = "kmod-py"


class NotFound(MirrorError):
    """HTTP 404/410: the mirror does not have this file."""


class Http(Protocol):
    def download(self, url: str, dest: Path, *, timeout: float, max_bytes: int | None) -> None:
        """Write the body of `url` to `dest` (replaced atomically) within `timeout` seconds;
        raise NotFound for 404/410, MirrorError otherwise."""
        ...


class UrllibHttp:
    def download(self, url: str, dest: Path, *, timeout: float = 600.0,
                 max_bytes: int | None = None) -> None:
        import urllib.error  # lazily: urllib.request pulls in http, ssl and email (~20 ms)
        import urllib.request

        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".part{os.getpid()}")
        deadline = time.monotonic() + timeout
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp, \
                    open(tmp, "wb") as out, \
                    progress.task(f"download {url.rsplit('/', 1)[-1]}",
                                  _total(resp.headers.get("Content-Length"), max_bytes),
                                  unit="bytes") as shown:
                got = 0
                while chunk := resp.read(1 << 20):
                    got += len(chunk)
                    shown.advance(len(chunk))
                    if max_bytes is not None and got > max_bytes:
                        raise VerificationError(
                            f"{url}: larger than the {max_bytes} bytes the signed index lists",
                            "the mirror served a modified file; use a trusted mirror")
                    if time.monotonic() > deadline:
                        raise MirrorError(f"{url}: download took longer than {timeout:.0f} s",
                                          "check the network or the mirror")
                    out.write(chunk)
        except urllib.error.HTTPError as e:
            tmp.unlink(missing_ok=True)
            cls = NotFound if e.code in (404, 410) else MirrorError
            raise cls(f"{url}: HTTP {e.code}", "check the suite name and the mirror") from e
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            tmp.unlink(missing_ok=True)
            reason = getattr(e, "reason", e)
            raise MirrorError(
                f"cannot download {url}: {reason}",
                "check the network or set KMOD_PY_DEBIAN_MIRROR / --mirror",
            ) from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)


def _total(length: str | None, max_bytes: int | None) -> int | None:
    """The size to show a download against: the server's Content-Length, else the index's."""
    if length is not None and length.isdigit():
        return int(length)
    return max_bytes
