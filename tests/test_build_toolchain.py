"""Make variables for a kernel's toolchain: its gcc, clang/LLVM=, cross-compiling (pure)."""

from __future__ import annotations

from kbuild_py.build.toolchain import toolchain_for

GCC12 = {
    "CONFIG_CC_VERSION_TEXT": "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0",
    "CONFIG_CC_IS_GCC": "y",
}
CLANG = {
    "CONFIG_CC_VERSION_TEXT": "Debian clang version 14.0.6",
    "CONFIG_CC_IS_CLANG": "y",
    "CONFIG_LD_IS_LLD": "y",
}


def which_of(*names: str):  # type: ignore[no-untyped-def]
    return lambda prog: f"/usr/bin/{prog}" if prog in names else None


def test_native_gcc_kernel_uses_its_gcc() -> None:
    tc = toolchain_for(GCC12, "x86", {}, machine="x86_64", which=None)
    assert tc.variables == {"CC": "gcc-12"} and tc.notes == ()


def test_arm64_kernel_on_amd64_cross_compiles_with_its_gcc() -> None:
    tc = toolchain_for(GCC12, "arm64", {}, machine="x86_64", which=None)
    assert tc.variables == {
        "ARCH": "arm64",
        "CROSS_COMPILE": "aarch64-linux-gnu-",
        "CC": "aarch64-linux-gnu-gcc-12",
    }
    assert tc.notes == ("cross-compiling for arm64: ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-",)
    prefixed = {"CONFIG_CC_VERSION_TEXT": "aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"}
    assert toolchain_for(prefixed, "arm64", {}, machine="x86_64", which=None).variables["CC"] == (
        "aarch64-linux-gnu-gcc-14"
    )
    assert toolchain_for(GCC12, "arm64", {}, machine="aarch64", which=None).variables == {
        "CC": "gcc-12"
    }


def test_clang_lld_kernel_builds_with_llvm() -> None:
    tc = toolchain_for(CLANG, "x86", {}, machine="x86_64", which=which_of("clang-14"))
    assert tc.variables == {"LLVM": "-14"}
    assert tc.cc == "clang-14"
    assert "clang-built kernel (CONFIG_CC_IS_CLANG=y, CONFIG_LD_IS_LLD=y" in tc.notes[0]
    assert tc.notes[0].endswith("building with LLVM=-14")
    tc = toolchain_for(CLANG, "x86", {}, machine="x86_64", which=which_of("clang"))
    assert tc.variables == {"LLVM": "1"} and "clang-14 is not installed" in tc.notes[1]
    no_lld = {**CLANG, "CONFIG_LD_IS_LLD": "n"}
    assert toolchain_for(
        no_lld, "x86", {}, machine="x86_64", which=which_of("clang-14")
    ).variables == {"CC": "clang-14"}


def test_user_variables_win() -> None:
    tc = toolchain_for(CLANG, "x86", {"LLVM": "1"}, machine="x86_64", which=None)
    assert tc.variables == {}
    tc = toolchain_for(GCC12, "arm64", {"CC": "gcc", "ARCH": "arm64"}, machine="x86_64", which=None)
    assert tc.variables == {"CROSS_COMPILE": "aarch64-linux-gnu-"}


def test_a_missing_host_compiler_is_not_forced() -> None:
    assert toolchain_for(GCC12, "x86", {}, machine="x86_64", which=which_of()).variables == {}
