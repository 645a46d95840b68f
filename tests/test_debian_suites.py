"""debian:SUITE over SUITE, SUITE-security and SUITE-updates; flavours; unreachable suites.

Unit tests: package indices are injected (no network)."""

from __future__ import annotations

import pytest

from kbuild_py.debian import archive as debian
from kbuild_py.debian import suites
from kbuild_py.debian.archive import Archive, KernelSuite, Package
from kbuild_py.errors import MirrorError


def pkg(name: str, version: str, depends: str = "") -> Package:
    return Package(name, version, f"pool/{name}_{version}.deb", depends, "", 1)


def meta(flavour: str, release: str, version: str) -> Package:
    return pkg(f"linux-headers-{flavour}", version, f"linux-headers-{release} (= {version})")


class FakeArchive(Archive):
    def __init__(self, suite: str, packages: list[Package] | None, mirror: str = "http://m/debian"):
        self.suite, self.arch, self.mirror = suite, "amd64", mirror
        self._missing = packages is None
        self._packages = None if packages is None else {}
        for p in packages or ():
            self._packages.setdefault(p.name, []).append(p)  # type: ignore[union-attr]

    @property
    def packages(self) -> dict[str, list[Package]]:
        if self._missing:
            raise MirrorError(f"{self.mirror}/dists/{self.suite}/main: HTTP 404")
        assert self._packages is not None
        return self._packages


def suite_of(
    main: list[Package], security: list[Package] | None, updates: list[Package] | None
) -> KernelSuite:
    ks = KernelSuite.__new__(KernelSuite)
    ks.suite, ks.arch = "bookworm", "amd64"
    ks.parts = [
        FakeArchive("bookworm", main),
        FakeArchive("bookworm-security", security, "http://m/debian-security"),
        FakeArchive("bookworm-updates", updates),
    ]
    return ks


MAIN = [
    meta("amd64", "6.1.0-50-amd64", "6.1.176-1"),
    pkg("linux-headers-6.1.0-50-amd64", "6.1.176-1"),
    meta("cloud-amd64", "6.1.0-50-cloud-amd64", "6.1.176-1"),
    pkg("linux-headers-6.1.0-50-cloud-amd64", "6.1.176-1"),
]
SECURITY = [
    meta("amd64", "6.1.0-57-amd64", "6.1.192-3"),
    pkg("linux-headers-6.1.0-57-amd64", "6.1.192-3"),
    pkg("linux-headers-6.12.117+deb12-amd64", "6.12.117-1"),
    pkg("linux-headers-6.12-amd64", "6.12.117-1"),
    pkg("linux-image-6.1.0-57-amd64", "6.1.192-3"),
]


def test_the_newest_metapackage_wins_across_the_suites() -> None:
    ks = suite_of(MAIN, SECURITY, [])
    assert ks.current_release() == "6.1.0-57-amd64"
    assert ks.current_release("cloud-amd64") == "6.1.0-50-cloud-amd64"  # only main has it here
    assert ks.releases() == [
        ("6.1.0-50-amd64", "bookworm"),
        ("6.1.0-57-amd64", "bookworm-security"),
        ("6.12.117+deb12-amd64", "bookworm-security"),
    ]
    found = ks.find("linux-image-6.1.0-57-amd64")
    assert found is not None and found[0].suite == "bookworm-security"


def test_without_security_updates_the_main_suite_answers() -> None:
    assert suite_of(MAIN, [], []).current_release() == "6.1.0-50-amd64"


def test_an_unreachable_security_suite_is_an_error_not_a_stale_kernel() -> None:
    with pytest.raises(MirrorError) as info:
        suite_of(MAIN, None, []).current_release()
    assert "Debian bookworm-security (amd64) is unreachable at http://m/debian-security" in (
        info.value.message
    )
    assert "KMOD_PY_DEBIAN_SECURITY_MIRROR" in (info.value.hint or "")
    # listing and finding a package still work from what answers
    assert suite_of(MAIN, None, []).releases() == [("6.1.0-50-amd64", "bookworm")]


def test_an_unreachable_main_suite_is_an_error_everywhere() -> None:
    with pytest.raises(MirrorError, match="Debian bookworm .* is unreachable"):
        suite_of(None, SECURITY, []).releases()


@pytest.mark.parametrize(
    ("package", "flavour", "release"),
    [
        ("linux-headers-6.1.0-57-amd64", "amd64", "6.1.0-57-amd64"),
        ("linux-headers-6.1.0-57-cloud-amd64", "amd64", None),
        ("linux-headers-6.1.0-57-cloud-amd64", "cloud-amd64", "6.1.0-57-cloud-amd64"),
        ("linux-headers-6.1-amd64", "amd64", None),  # a metapackage
        ("linux-headers-6.12.115+deb13.1-arm64", "arm64", "6.12.115+deb13.1-arm64"),
        ("linux-headers-6.1.0-0.deb11.52-rt-amd64", "rt-amd64", "6.1.0-0.deb11.52-rt-amd64"),
        ("linux-headers-6.1.0-57-common", "amd64", None),
    ],
)
def test_release_of(package: str, flavour: str, release: str | None) -> None:
    assert suites.release_of(package, flavour) == release


def test_flavours_and_arches_of_releases() -> None:
    assert suites.flavour_of("6.1.0-57-cloud-arm64") == "cloud-arm64"
    assert suites.flavour_of("7.3.4+deb13-amd64") == "amd64"
    assert suites.arch_of("6.1.0-57-rt-arm64") == "arm64"
    assert suites.arch_of("5.10.0-46-amd64") == "amd64"


def test_dists_and_security_root(monkeypatch: pytest.MonkeyPatch) -> None:
    assert suites.dists("bookworm") == ("bookworm", "bookworm-security", "bookworm-updates")
    assert suites.dists("trixie-backports") == ("trixie-backports",)
    assert suites.dists("sid") == ("sid",)
    monkeypatch.delenv("KMOD_PY_DEBIAN_SECURITY_MIRROR", raising=False)
    assert debian.security_url("http://mirror.example/debian/") == (
        "http://mirror.example/debian-security"
    )
    monkeypatch.setenv("KMOD_PY_DEBIAN_SECURITY_MIRROR", "http://sec.example/ds/")
    assert debian.security_url("http://mirror.example/debian") == "http://sec.example/ds"
    assert Archive("bookworm-security").mirror == "http://sec.example/ds"


class DpkgDeb:
    """A fake host-process seam standing in for dpkg-deb."""

    def __init__(self, rc: int = 0, lines: tuple[str, ...] = (), timed_out: bool = False) -> None:
        self.rc, self.lines, self.timed_out = rc, lines, timed_out
        self.argv: list[str] = []

    def run(self, argv, *, cwd=None, env=None, timeout=None, on_line=None):  # type: ignore[no-untyped-def]
        from kbuild_py.seams.process import Result

        self.argv = list(argv)
        for line in self.lines:
            if on_line:
                on_line(line)
        return Result(self.rc, self.timed_out)


def test_extract_deb_goes_through_the_process_seam(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from kbuild_py.debian.archive import extract_deb
    from kbuild_py.errors import MirrorError

    ok = DpkgDeb()
    assert extract_deb(tmp_path / "a.deb", tmp_path / "out", runner=ok) == tmp_path / "out"
    assert ok.argv == ["dpkg-deb", "-x", str(tmp_path / "a.deb"), str(tmp_path / "out")]
    assert (tmp_path / "out").is_dir()
    bad = DpkgDeb(2, ("dpkg-deb: error: 'a.deb' is not a Debian format archive",))
    with pytest.raises(MirrorError, match="dpkg-deb -x a.deb failed: .*not a Debian format"):
        extract_deb(tmp_path / "a.deb", tmp_path / "out", runner=bad)
    with pytest.raises(MirrorError, match="took longer than 600 s"):
        extract_deb(tmp_path / "a.deb", tmp_path / "out", runner=DpkgDeb(-9, timed_out=True))
