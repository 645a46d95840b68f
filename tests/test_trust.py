"""kbuild_py.trust: signed Release files, Valid-Until, SHA256 of indices and .debs.

Real signed data (bookworm-security's InRelease, saved from the mirror) checked with the
real gpgv against Debian's keyring; forged data signed by a throwaway key made in the test.
HTTP goes through a fake at the seam: no network.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustdata as td
from conftest import require

from kbuild_py.errors import VerificationError
from kbuild_py.seams.http import NotFound
from kbuild_py.trust import gpgv, hashes
from kbuild_py.trust.archive import SignedSuite, fetch_verified
from kbuild_py.trust.hashes import Digest
from kbuild_py.trust.packages import parse_packages
from kbuild_py.trust.release import read_inrelease, read_release

NOW = td.REAL_DATE + timedelta(days=1)
PACKAGES = "main/binary-amd64/Packages.xz"


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    require(shutil.which("gpgv") is not None, "gpgv")
    require(gpgv.DEBIAN_KEYRING.is_file(), "debian-archive-keyring")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[td.ThrowawayKey]:
    require(shutil.which("gpg") is not None, "gpg (gnupg)")
    k = td.ThrowawayKey(tmp_path_factory.mktemp("gnupg"))
    yield k
    k.close()


def real() -> bytes:
    return td.REAL_INRELEASE.read_bytes()


# --- real signed data against Debian's keyring -------------------------------------------

def test_real_inrelease_verifies_against_the_debian_keyring() -> None:
    rel = read_inrelease(real(), "bookworm-security", NOW, "InRelease")
    assert (rel.suite, rel.codename) == ("oldstable-security", "bookworm-security")
    assert set(rel.signers) == set(td.REAL_SIGNERS)
    assert rel.valid_until == td.REAL_VALID_UNTIL and rel.by_hash
    d = rel.digest(PACKAGES, "InRelease")
    assert len(d.sha256) == 64 and d.size > 1000
    # the suite's alias names it too
    assert read_inrelease(real(), "oldstable-security", NOW, "InRelease").files == rel.files


def test_expired_release_is_refused() -> None:
    late = td.REAL_VALID_UNTIL + timedelta(seconds=1)
    with pytest.raises(VerificationError, match=r"expired on 2026-12-07 00:22 UTC \(Valid-Until\)"):
        read_inrelease(real(), "bookworm-security", late, "InRelease")


def test_release_from_the_future_and_for_another_suite_are_refused() -> None:
    with pytest.raises(VerificationError, match="in the future"):
        read_inrelease(real(), "bookworm-security", td.REAL_DATE - timedelta(hours=1), "R")
    with pytest.raises(VerificationError, match="is for suite 'bookworm-security', not 'trixie"):
        read_inrelease(real(), "trixie-security", NOW, "R")


def test_one_changed_byte_breaks_the_signature() -> None:
    data = real()
    i = data.index(b"main/binary-amd64/Packages.xz") - 30  # inside a listed SHA256
    tampered = data[:i] + (b"0" if data[i : i + 1] != b"0" else b"1") + data[i + 1 :]
    with pytest.raises(VerificationError, match="BAD signature"):
        read_inrelease(tampered, "bookworm-security", NOW, "InRelease")


def test_text_around_the_signed_message_is_refused() -> None:
    data = real()
    with pytest.raises(VerificationError, match="data after the signature"):
        read_inrelease(data + b"SHA256:\n 00 1 main/evil\n", "bookworm-security", NOW, "R")
    with pytest.raises(VerificationError, match="not a clearsigned file"):
        read_inrelease(b"Suite: evil\n" + data, "bookworm-security", NOW, "R")
    with pytest.raises(VerificationError, match="more than one"):
        read_inrelease(data + data, "bookworm-security", NOW, "R")


def test_real_release_with_a_stale_detached_signature_is_bad() -> None:
    with pytest.raises(VerificationError, match="BAD signature"):
        read_release(td.REAL_RELEASE.read_bytes(), td.REAL_STALE_SIG.read_bytes(),
                     "bookworm-security", NOW, "Release")


# --- forged data: a throwaway key -------------------------------------------------------

def test_release_signed_by_another_key_is_refused(key: td.ThrowawayKey) -> None:
    forged = key.clearsign(td.release_text({PACKAGES: b"x"}))
    with pytest.raises(VerificationError) as err:
        read_inrelease(forged, "bookworm", datetime.now(UTC), "dists/bookworm/InRelease")
    assert err.value.message.startswith("dists/bookworm/InRelease: no good signature by a key "
                                        f"in {gpgv.DEBIAN_KEYRING}")
    # the same file verifies against the key that made it: the check is the keyring's
    rel = read_inrelease(forged, "bookworm", datetime.now(UTC), "R", (key.keyring,))
    assert rel.digest(PACKAGES, "R") == Digest(hashlib.sha256(b"x").hexdigest(), 1)


def test_detached_signature(key: td.ThrowawayKey) -> None:
    text = td.release_text({PACKAGES: b"x"}).encode()
    sig = key.detach_sign(text)
    rel = read_release(text, sig, "bookworm", datetime.now(UTC), "R", (key.keyring,))
    assert PACKAGES in rel.files
    with pytest.raises(VerificationError, match="BAD signature"):
        read_release(text.replace(b"Suite: bookworm", b"Suite: bookwor "), sig, "bookworm",
                     datetime.now(UTC), "R", (key.keyring,))
    with pytest.raises(VerificationError, match="no good signature"):
        read_release(text, sig, "bookworm", datetime.now(UTC), "R")


def test_sha1_signature_does_not_count(key: td.ThrowawayKey) -> None:
    weak = key.clearsign(td.release_text({PACKAGES: b"x"}), digest="SHA1")
    with pytest.raises(VerificationError, match="weak hash"):
        read_inrelease(weak, "bookworm", datetime.now(UTC), "R", (key.keyring,))


def test_status_lines_count_only_good_and_valid_signatures() -> None:
    status = "\n".join([
        "[GNUPG:] NEWSIG",
        "[GNUPG:] ERRSIG 6ED0E7B82643E131 1 8 01 1783765031 9 4CB5",
        "[GNUPG:] NO_PUBKEY 6ED0E7B82643E131",
        "[GNUPG:] NEWSIG",
        "[GNUPG:] EXPKEYSIG 1111 old key",
        "[GNUPG:] VALIDSIG AAAA 2026-07-11 1 0 4 0 1 8 01 AAAA",
        "[GNUPG:] NEWSIG",
        "[GNUPG:] GOODSIG F8D2585B8783D481 Debian Stable Release Key",
        "[GNUPG:] VALIDSIG 4D64FEC1 2026-07-11 1783765141 0 4 0 22 8 01 4D64FEC1",
    ])
    good, bad = gpgv.good_signers(status)
    assert good == ["4D64FEC1"] and bad == ["EXPKEYSIG 1111"]


def test_release_without_sha256_list_is_refused(key: td.ThrowawayKey) -> None:
    text = td.release_text({}).replace("SHA256:\n", "")
    with pytest.raises(VerificationError, match="no SHA256 file list"):
        read_inrelease(key.clearsign(text), "bookworm", datetime.now(UTC), "R", (key.keyring,))


# --- hashes and Packages stanzas --------------------------------------------------------

def test_digest_fields_are_required_and_well_formed() -> None:
    with pytest.raises(VerificationError, match="pkg: no SHA256 in the index"):
        Digest.parse("", 10, "pkg")
    with pytest.raises(VerificationError, match="malformed SHA256"):
        Digest.parse("abc", 10, "pkg")
    with pytest.raises(VerificationError, match="malformed size"):
        Digest.parse("a" * 64, "ten", "pkg")
    assert Digest.parse("A" * 64, " 7", "pkg") == Digest("a" * 64, 7)


def test_file_checks_name_size_and_hash(tmp_path: Path) -> None:
    f = tmp_path / "x.deb"
    f.write_bytes(b"hello")
    good = Digest(hashlib.sha256(b"hello").hexdigest(), 5)
    hashes.verify(f, good, "x.deb")
    with pytest.raises(VerificationError, match=r"^x.deb did not verify: size 5 is not the 6"):
        hashes.verify(f, Digest(good.sha256, 6), "x.deb")
    with pytest.raises(VerificationError, match=r"x.deb did not verify: SHA256 [0-9a-f]{16}"):
        hashes.verify(f, Digest("0" * 64, 5), "x.deb")


def test_packages_stanzas_and_refused_ones() -> None:
    text = "\n".join([
        td.stanza("linux-image-6.1.0-9-amd64", "6.1.1-1", "pool/main/l/a.deb", b"deb"),
        td.stanza("linux-image-6.1.0-8-amd64", "6.1.0-1", "pool/main/l/b.deb", b"deb",
                  sha256=False),
        td.stanza("linux-image-6.1.0-7-amd64", "6.1.0-1", "../../../etc/evil.deb", b"deb"),
        td.stanza("bash", "5.2", "pool/main/b/bash.deb", b"x"),
    ])
    import re

    pkgs = parse_packages(text, re.compile(r"linux-image-"))
    assert set(pkgs) == {f"linux-image-6.1.0-{n}-amd64" for n in (7, 8, 9)}
    ok = pkgs["linux-image-6.1.0-9-amd64"][0]
    assert ok.digest() == Digest(hashlib.sha256(b"deb").hexdigest(), 3)
    assert str(ok.pool_path()) == "pool/main/l/a.deb"
    with pytest.raises(VerificationError, match="linux-image-6.1.0-8-amd64 6.1.0-1: no SHA256"):
        pkgs["linux-image-6.1.0-8-amd64"][0].digest()
    with pytest.raises(VerificationError, match="unusable Filename"):
        pkgs["linux-image-6.1.0-7-amd64"][0].pool_path()


# --- SignedSuite over a fake HTTP seam --------------------------------------------------

class FakeHttp:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.got: list[str] = []

    def download(self, url: str, dest: Path, *, timeout: float, max_bytes: int | None) -> None:
        self.got.append(url)
        if url not in self.files:
            raise NotFound(f"{url}: HTTP 404")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.files[url])


ROOT = "http://mirror.invalid/debian"
DISTS = f"{ROOT}/dists/bookworm"


def signed_mirror(key: td.ThrowawayKey, index: bytes, *, served: bytes | None = None,
                  inrelease: bool = True, **kw) -> FakeHttp:  # type: ignore[no-untyped-def]
    text = td.release_text({PACKAGES: index}, **kw)
    by_hash = f"{DISTS}/main/binary-amd64/by-hash/SHA256/{hashlib.sha256(index).hexdigest()}"
    files = {by_hash: index if served is None else served}
    if inrelease:
        files[f"{DISTS}/InRelease"] = key.clearsign(text)
    else:
        files[f"{DISTS}/Release"] = text.encode()
        files[f"{DISTS}/Release.gpg"] = key.detach_sign(text.encode())
    return FakeHttp(files)


def suite(http: FakeHttp, cache: Path, key: td.ThrowawayKey, **kw) -> SignedSuite:  # type: ignore[no-untyped-def]
    return SignedSuite(ROOT, "bookworm", cache, http=http, keyrings=(key.keyring,), **kw)


def test_index_comes_by_hash_and_is_reused_from_the_cache(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = td.packages_xz(td.stanza("busybox-static", "1", "pool/b.deb", b"b"))
    http = signed_mirror(key, index)
    path = suite(http, tmp_path, key).index(PACKAGES)
    assert path.read_bytes() == index
    assert http.got == [f"{DISTS}/InRelease", f"{DISTS}/main/binary-amd64/by-hash/SHA256/"
                        f"{hashlib.sha256(index).hexdigest()}"]
    http.got.clear()
    assert suite(http, tmp_path, key, max_age=3600).index(PACKAGES) == path
    assert http.got == []  # Release and index from the cache, both verified again


def test_tampered_index_is_refused_and_not_cached(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = td.packages_xz(td.stanza("busybox-static", "1", "pool/b.deb", b"b"))
    evil = index[:-1] + bytes([index[-1] ^ 1])
    http = signed_mirror(key, index, served=evil)
    with pytest.raises(VerificationError) as err:
        suite(http, tmp_path, key).index(PACKAGES)
    assert err.value.message.startswith(f"{DISTS}/{PACKAGES} did not verify: SHA256 ")
    assert not any(p.name.endswith("Packages.xz") for p in tmp_path.iterdir())


def test_cached_index_changed_on_disk_is_downloaded_again(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = td.packages_xz(td.stanza("busybox-static", "1", "pool/b.deb", b"b"))
    http = signed_mirror(key, index)
    path = suite(http, tmp_path, key).index(PACKAGES)
    path.write_bytes(b"\0" * len(index))  # same size, other content
    http.got.clear()
    assert suite(http, tmp_path, key, max_age=3600).index(PACKAGES).read_bytes() == index
    assert len(http.got) == 1  # only the index: the cached Release still verified


def test_release_and_detached_signature_when_there_is_no_inrelease(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index = td.packages_xz()
    http = signed_mirror(key, index, inrelease=False)
    assert suite(http, tmp_path, key).index(PACKAGES).read_bytes() == index
    assert http.got[:3] == [f"{DISTS}/InRelease", f"{DISTS}/Release", f"{DISTS}/Release.gpg"]


def test_cached_release_that_no_longer_verifies_is_fetched_again(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    http = signed_mirror(key, td.packages_xz())
    suite(http, tmp_path / "c", key).release()
    cached = tmp_path / "c" / "InRelease"
    cached.write_bytes(cached.read_bytes().replace(b"Suite: bookworm", b"Suite: bookwor "))
    http.got.clear()
    suite(http, tmp_path / "c", key, max_age=3600).release()
    assert http.got == [f"{DISTS}/InRelease"]
    assert b"Suite: bookworm\n" in cached.read_bytes()


def test_expired_release_from_the_mirror_is_refused_and_not_cached(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = datetime.now(UTC) - timedelta(days=30)
    http = signed_mirror(key, td.packages_xz(), date=old, valid_until=old + timedelta(days=7))
    with pytest.raises(VerificationError, match=r"dists/bookworm/InRelease expired on "):
        suite(http, tmp_path, key).release()
    assert not (tmp_path / "InRelease").exists()


def test_fetch_verified_replaces_a_cached_file_that_does_not_match(tmp_path: Path) -> None:
    body = b"the real deb"
    digest = Digest(hashlib.sha256(body).hexdigest(), len(body))
    dest = tmp_path / "debs" / "x.deb"
    dest.parent.mkdir()
    dest.write_bytes(b"a forged deb")  # same size: only the hash tells
    http = FakeHttp({"http://m/x.deb": body})
    assert fetch_verified(http, "http://m/x.deb", dest, digest, "x.deb").read_bytes() == body
    http.files["http://m/x.deb"] = b"a forged deb"
    dest.unlink()
    with pytest.raises(VerificationError, match=r"^x.deb did not verify: SHA256"):
        fetch_verified(http, "http://m/x.deb", dest, digest, "x.deb")
    assert list(dest.parent.iterdir()) == []
