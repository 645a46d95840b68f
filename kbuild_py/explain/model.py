"""The data an explanation is made of. Imports nothing of the project (shared by every part)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mention:
    """A kernel identifier a diagnostic names.

    kind: "function" (too many/few arguments, implicit declaration, passing argument ...),
    "macro" (macro "X" requires/passed N arguments), "identifier" (undeclared), "type"
    (unknown type name), "struct" (incomplete/undefined struct), "member" (has no member
    named), "ops-member" (an initializer of a struct member whose pointer type is incompatible),
    "symbol" (modpost: undefined / GPL-only), "objtool" (a function objtool complains about).
    For members, `container` is the struct ("struct timer_list") and `identifier` the member.
    """

    identifier: str
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    container: str | None = None
    detail: str | None = None  # e.g. "expected 'void (*)(…)', have 'int (*)(…)'"

    @property
    def name(self) -> str:
        """What is looked up, as a user reads it: `struct platform_driver.remove` or `strlcpy`."""
        return f"{self.container}.{self.identifier}" if self.container else self.identifier


@dataclass(frozen=True)
class Declaration:
    """One declaration found in a kernel's headers."""

    kind: str  # macro, function, inline function, struct, typedef, enum constant, variable, member
    text: str  # the whole declaration as written (continuation lines joined with newlines)
    file: str  # relative to the kernel tree, e.g. include/linux/device/class.h
    line: int  # 1-based

    @property
    def signature(self) -> str:
        """The declaration in one line: a macro's or struct's first line, a function's
        prototype (an inline function without its body), a member's declaration."""
        if self.kind in ("macro", "struct"):
            return self.text.splitlines()[0].rstrip("\\ \t").strip()
        text = self.text.split("{", 1)[0] if self.kind == "inline function" else self.text
        return " ".join(text.split())


@dataclass(frozen=True)
class Kernel:
    """A kernel whose headers can be searched."""

    release: str  # UTS release, e.g. 6.1.0-57-amd64
    version: tuple[int, int, int]  # from include/generated/uapi/linux/version.h
    spec: str = ""  # how the user named it (debian:trixie-backports, 6.1.0-57-amd64, ...)

    @property
    def code(self) -> int:
        """LINUX_VERSION_CODE (the sublevel is clamped to 255 like KERNEL_VERSION does)."""
        a, b, c = self.version
        return (a << 16) + (b << 8) + min(c, 255)

    @property
    def version_text(self) -> str:
        return ".".join(str(n) for n in self.version)


@dataclass(frozen=True)
class Lookup:
    """An identifier in one kernel: its declaration, or None when the headers lack it."""

    kernel: Kernel
    declaration: Declaration | None
    note: str = ""  # e.g. "struct timer_list has no member data", "struct absent"
    others: int = 0  # further declarations of the name (other #if branches, other files)


@dataclass(frozen=True)
class Change:
    """The declaration differs between two kernels adjacent in version order."""

    before: Kernel
    after: Kernel
    what: str  # "changed", "removed", "added"

    @property
    def guard(self) -> str | None:
        """The #if that selects the newer form on every kernel at hand (None when the two
        kernels share a LINUX_VERSION_CODE, which no guard can tell apart)."""
        if self.before.code == self.after.code:
            return None
        a, b, c = self.after.version
        return f"#if LINUX_VERSION_CODE >= KERNEL_VERSION({a}, {b}, {min(c, 255)})"


@dataclass
class Explanation:
    """What the headers say about one mention across the kernels at hand.

    verdict: "drift" (declarations differ or the name is absent somewhere), "same" (declared
    identically in every kernel at hand: no change between them), "unknown" (no kernel
    declares it: e.g. a typo in the module's own code — left unexplained).
    """

    mention: Mention
    lookups: list[Lookup] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    failing: str | None = None  # release of the kernel whose build failed, if any

    @property
    def verdict(self) -> str:
        if all(lk.declaration is None for lk in self.lookups):
            return "unknown"
        return "drift" if self.changes else "same"
