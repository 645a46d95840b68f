"""Kernel specs: parsing (pure) and resolution to host or container targets."""

from __future__ import annotations

import re

import pytest
from conftest import run_kmod_py

from kbuild_py.debian import archive as debian
from kbuild_py.errors import UsageError
from kbuild_py.kernels.resolve import parse_spec, resolve_spec, suite_kernels
from kbuild_py.kernels.spec import KernelSpec


@pytest.mark.parametrize(
    ("spec", "kind", "value"),
    [
        ("host", "host", ""),
        (" host ", "host", ""),
        ("6.1.0-50-amd64", "release", "6.1.0-50-amd64"),
        ("6.12.117+deb13-amd64", "release", "6.12.117+deb13-amd64"),
        ("7.3.4+deb13-cloud-amd64", "release", "7.3.4+deb13-cloud-amd64"),
        ("debian:bookworm", "debian", "bookworm"),
        ("debian:trixie-backports", "debian", "trixie-backports"),
        ("debian:sid", "debian", "sid"),
        ("image:kmod-py/kernel:debian-trixie", "image", "kmod-py/kernel:debian-trixie"),
        ("image:reg.example:5000/k/headers:6.1", "image", "reg.example:5000/k/headers:6.1"),
        ("image:myheaders", "image", "myheaders"),
    ],
)
def test_parse_spec_accepts(spec: str, kind: str, value: str) -> None:
    assert parse_spec(spec) == KernelSpec(kind, value)


@pytest.mark.parametrize(
    ("spec", "suite", "flavour"),
    [
        ("debian:bookworm/arm64", "bookworm", "arm64"),
        ("debian:bullseye/amd64", "bullseye", "amd64"),
        ("debian:trixie/cloud", "trixie", "cloud-amd64"),
        ("debian:trixie/rt", "trixie", "rt-amd64"),
        ("debian:trixie-backports/rt-arm64", "trixie-backports", "rt-arm64"),
        ("debian:bookworm/cloud-arm64", "bookworm", "cloud-arm64"),
    ],
)
def test_parse_spec_flavours(spec: str, suite: str, flavour: str) -> None:
    assert parse_spec(spec) == KernelSpec("debian", suite, flavour)


@pytest.mark.parametrize("spec", ["debian:bookworm/i386", "debian:bookworm/cloudy",
                                  "debian:x/arm64", "debian:bookworm/", "debian:bookworm/arm64/rt"])
def test_parse_spec_rejects_bad_flavours(spec: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_spec(spec)
    assert "flavour" in info.value.message or "suite" in info.value.message


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("debian:buster", "Debian suites: bullseye, bookworm, bookworm-backports, trixie"),
        ("debian:buster", "buster is archived"),
        ("debian:bullseye-backports", "bullseye-backports is archived"),
        ("debian:", "Debian suites:"),
        ("image:", "image:NAME or image:NAME:TAG"),
        ("image:Bad Name", "image:NAME or image:NAME:TAG"),
        ("fedora:40", "kernel specs: host, a release"),
        ("latest", "kernel specs: host, a release"),
        ("", "kernel specs:"),
    ],
)
def test_parse_spec_rejects_with_what_exists(spec: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_spec(spec)
    assert says in f"{info.value.message} {info.value.hint}"


@pytest.mark.headers
def test_host_release_resolves_to_the_host_tree(host_release: str) -> None:
    t = resolve_spec(host_release)
    assert t.where == "host" and t.release == host_release
    assert t.kdir.startswith("/usr/src/linux-headers-") or t.kdir.endswith("/build")
    assert t.tree.vermagic.startswith(f"{host_release} SMP ")


@pytest.mark.network
def test_suite_kernels_lists_the_current_release() -> None:
    current, releases = suite_kernels("trixie-backports")
    assert re.fullmatch(r"[7-9]\.\d+\.\d+\+deb13-amd64", current), current
    assert (current, "trixie-backports") in releases


@pytest.mark.parametrize("suite", ["bullseye", "bookworm", "trixie"])
def test_suite_kernels_include_security_updates(suite: str) -> None:
    """debian:SUITE is Debian's current kernel: the newest linux-headers-amd64 of SUITE,
    SUITE-security and SUITE-updates (bookworm's lives in bookworm-security)."""
    current, releases = suite_kernels(suite)
    origins = dict(releases)
    assert current in origins
    main = debian.Archive(suite).current_release()
    newest_meta = max(
        (p.version, a.suite) for a in debian.KernelSuite(suite).parts
        for p in a.packages.get("linux-headers-amd64", ())
    )
    assert origins[current] == newest_meta[1] if current != main else True
    assert debian._version_key(current) >= debian._version_key(main)
    assert any(o == f"{suite}-security" for o in origins.values()), origins
    for rel in origins:  # only this flavour: no cloud/rt, no 6.1-amd64 metapackage
        assert "-cloud-" not in rel and "-rt-" not in rel and re.search(r"-\d|\+deb", rel)


def test_bookworm_arm64_and_bullseye_resolve_over_their_security_suites() -> None:
    assert re.fullmatch(r"6\.1\.0-\d+-arm64", suite_kernels("bookworm/arm64")[0])
    assert re.fullmatch(r"5\.10\.0-\d+-amd64", suite_kernels("bullseye")[0])
    assert re.fullmatch(r"6\.1\.0-\d+-rt-amd64", suite_kernels("bookworm/rt")[0])
    with pytest.raises(UsageError):
        suite_kernels("potato")


@pytest.mark.docker
def test_debian_specs_resolve_to_each_suites_kernel(debian_targets) -> None:  # type: ignore[no-untyped-def]
    prefixes = {"debian:bookworm": "6.1.0-", "debian:trixie": "6.12.",
                "debian:trixie-backports": ("7.", "8.")}
    for spec, t in debian_targets.items():
        suite = spec.split(":", 1)[1]
        assert t.release == debian.current_release(suite)
        assert t.release.startswith(prefixes[spec]) and t.release.endswith("-amd64")
        assert t.suite == suite
        assert t.kdir == f"/lib/modules/{t.release}/build"
        assert t.where == "kmod-py/kernel:" + t.release.replace("+", "_")
        assert t.tree.release == t.release  # the snapshot copied out of the image
        assert t.tree.vermagic.startswith(f"{t.release} SMP preempt mod_unload ")
        assert t.tree.symvers_path is not None
        assert t.compiler.split(" ")[0].endswith(("gcc-12", "gcc-14"))
    assert debian_targets["debian:bookworm"].tree.symvers_path.stat().st_size > 100_000


@pytest.mark.docker
def test_exact_release_not_on_host_goes_to_its_debian_suite(debian_targets) -> None:  # type: ignore[no-untyped-def]
    trixie = debian_targets["debian:trixie"]  # bookworm's current kernel may be the host's
    t = resolve_spec(trixie.release)
    assert t.where == trixie.where and t.suite == "trixie"
    assert t.spec == trixie.release


@pytest.mark.docker
def test_unknown_release_lists_what_exists(docker_client, host_release: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as info:
        resolve_spec("6.1.0-999-amd64")
    err = info.value
    assert "no kernel 6.1.0-999-amd64" in err.message
    assert f"host build trees: {host_release}" in err.hint
    assert "debian:bookworm = 6.1.0-" in err.hint and "kmod-py kernels --suite" in err.hint


def test_release_search_skips_an_expired_suite_but_not_a_forged_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Searching suites for a release: an expired Release (e.g. sid on a stale mirror) is never
    read but only skips that suite, with a note; a bad signature still ends the search."""
    from kbuild_py.errors import ExpiredReleaseError, MirrorError, VerificationError

    bad: dict[str, Exception] = {"bullseye": ExpiredReleaseError("sid... expired on X")}

    class Fake:
        def __init__(self, suite: str, mirror: str | None, arch: str) -> None:
            self.suite = suite

        def find(self, name: str) -> object:
            if self.suite in bad:
                raise bad[self.suite]
            return object() if self.suite == "trixie" and "headers" in name else None

    monkeypatch.setattr(debian, "KernelSuite", Fake)
    skipped: list[str] = []
    assert debian.suite_for_release("6.12.1-amd64", None, skipped) == "trixie"
    assert skipped == ["debian:bullseye skipped: sid... expired on X"]
    bad["bookworm"] = VerificationError("bad signature")
    with pytest.raises(VerificationError, match="bad signature"):
        debian.suite_for_release("6.12.1-amd64", None, [])

    # fetching a kernel package by searching the suites: the same rule
    from kbuild_py.debian import linuximage

    del bad["bookworm"]
    with pytest.raises(MirrorError, match="not found in Debian") as info:
        linuximage.fetch_deb("linux-image-6.12.1-amd64")  # in no suite (Fake.find)
    assert not isinstance(info.value, VerificationError)
    assert "(skipped, Release expired: bullseye)" in (info.value.hint or "")
    with pytest.raises(ExpiredReleaseError):
        linuximage.fetch_deb("linux-image-6.12.1-amd64", suite="bullseye")


@pytest.mark.network
def test_an_expired_suite_named_explicitly_still_fails(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`debian:sid` never uses an expired Release: with the clock past sid's Valid-Until (as on
    a stale mirror) it fails with the expiry, whatever the mirror's sid is today."""
    from datetime import UTC, datetime, timedelta

    from kbuild_py.errors import ExpiredReleaseError
    from kbuild_py.kernels.resolve import place
    from kbuild_py.trust import archive as trust_archive

    later = datetime.now(UTC) + timedelta(days=3650)

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return later

    monkeypatch.setattr(trust_archive, "datetime", Later)
    with pytest.raises(ExpiredReleaseError,
                       match=r"dists/sid/InRelease expired on .* \(Valid-Until\)"):
        place("debian:sid")


@pytest.mark.docker
def test_kernels_command_lists_host_trees_and_images(debian_targets, host_release: str) -> None:  # type: ignore[no-untyped-def]
    res = run_kmod_py(["kernels"])
    assert res.exit_code == 0, res.output
    rel = re.escape(host_release)
    assert re.search(rf"^{rel}\s+{rel}\s+gcc-12", res.stdout, re.M), res.output
    for spec, t in debian_targets.items():
        assert re.search(rf"^{spec}\s+{re.escape(t.release)}\s+\S*gcc-1\d .*image {t.where}$",
                         res.stdout, re.M), res.output


@pytest.mark.network
def test_kernels_suite_command_marks_the_current_release() -> None:
    current = debian.current_release("trixie")
    res = run_kmod_py(["kernels", "--suite", "trixie"])
    assert res.exit_code == 0, res.output
    assert re.search(rf"^{re.escape(current)}\s+trixie(-security)?\s+debian:trixie\b",
                     res.output, re.M), res.output
    assert re.search(r"^\S+\s+trixie-security\s", res.output, re.M), res.output
    bad = run_kmod_py(["kernels", "--suite", "buster"])
    assert bad.exit_code == 2 and "buster is archived" in bad.output


@pytest.mark.docker
def test_unreachable_mirror_falls_back_to_the_suites_last_image(debian_targets) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    t = resolve_spec("debian:trixie", mirror="http://127.0.0.1:9/debian", progress=lines.append)
    assert t.release == debian_targets["debian:trixie"].release
    assert any("mirror unreachable, using the last image built" in ln for ln in lines), lines
    from kbuild_py.errors import MirrorError

    with pytest.raises(MirrorError, match="cannot download http://127.0.0.1:9/debian/dists/"):
        suite_kernels("trixie", mirror="http://127.0.0.1:9/debian")


@pytest.mark.docker
def test_kernels_and_images_json(debian_targets, host_release: str) -> None:  # type: ignore[no-untyped-def]
    import json

    res = run_kmod_py(["kernels", "--json"])
    assert res.exit_code == 0, res.output
    rows: dict[str, dict[str, str]] = {}
    for r in json.loads(res.stdout):  # host trees come first; an image may share a release
        rows.setdefault(r["spec"], r)
    assert rows[host_release]["where"].startswith("host ")
    for spec, t in debian_targets.items():
        assert rows[spec]["release"] == t.release and rows[spec]["compiler"] == t.compiler
    res = run_kmod_py(["images", "--json"])
    imgs = {i["release"]: i for i in json.loads(res.stdout)}
    bookworm = debian_targets["debian:bookworm"]
    assert imgs[bookworm.release]["name"] == bookworm.where
    assert "kmod-py/kernel:debian-bookworm" in imgs[bookworm.release]["tags"]
    res = run_kmod_py(["kernels", "--suite", "bookworm", "--json"])
    current = [r for r in json.loads(res.stdout) if r["current"]]
    assert current[0].pop("suite") in ("bookworm", "bookworm-security", "bookworm-updates")
    assert current == [{"release": bookworm.release, "spec": "debian:bookworm", "current": True,
                        "image_built": True}]
