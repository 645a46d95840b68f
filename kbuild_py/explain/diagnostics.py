"""From compiler, objtool and modpost output to the kernel identifiers involved. Pure
(apart from reading the module's own source to learn the struct type of an initialized
variable, through an injectable reader).

gcc (12 and 14, C or UTF-8 quotes), clang's equivalents where they name the identifier,
modpost's "undefined!" and GPL-only errors and objtool's `func(): message` lines are read.
Notes that follow an error are used too: `(near initialization for 'drv.remove')` names the
ops member, and `declared here` pointing into the module's own files marks a name as the
module's own (never explained from kernel headers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from kbuild_py.explain.model import Mention

_O, _C = "['‘\"“]", "['’\"”]"
_Q = rf"{_O}(?P<name>[A-Za-z_]\w*){_C}"

_DIAG = re.compile(
    r"^(?:\[[^\]]+\] )?(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
    r"(?P<sev>fatal error|error|warning|note): (?P<msg>.*)$"
)
_MODPOST = re.compile(r"^(?:\[[^\]]+\] )?(?:ERROR|WARNING): modpost: (?P<msg>.*)$")
_PREFIX = re.compile(r"^\[[^\]]+\] ")  # kmod-py's live view prefixes lines with [release]
_OBJTOOL = re.compile(
    r"^(?:\[[^\]]+\] )?(?P<file>\S+?): (?:error|warning): objtool: "
    r"(?P<name>[A-Za-z_]\w*)\(\)(?:\+0x[0-9a-f]+)?: (?P<msg>.*)$"
)

# (pattern over the message, mention kind); the pattern's `name` group is the identifier.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), kind)
    for p, kind in (
        (rf"too (?:many|few) arguments to function {_Q}", "function"),
        (rf"implicit declaration of function {_Q}", "function"),
        (rf"call to undeclared function {_Q}", "function"),
        (rf"passing argument \d+ of {_Q}", "function"),
        (rf"incompatible type for argument \d+ of {_Q}", "function"),
        (rf"conflicting types for {_Q}", "function"),
        (r"macro \"(?P<name>[A-Za-z_]\w*)\" (?:requires|passed) \d+ arguments?", "macro"),
        (rf"{_Q} undeclared", "identifier"),
        (rf"use of undeclared identifier {_Q}", "identifier"),
        (rf"unknown type name {_Q}", "type"),
        (
            rf"(?:invalid use of undefined type|dereferencing pointer to incomplete type|"
            rf"incomplete definition of type) {_O}(?:struct|union) (?P<name>\w+){_C}",
            "struct",
        ),
    )
)
_MEMBER = re.compile(
    rf"{_O}(?P<container>(?:struct|union) \w+){_C} has no member named {_O}(?P<name>\w+){_C}"
)
_CLANG_MEMBER = re.compile(
    rf"no member named {_O}(?P<name>\w+){_C} in {_O}(?P<container>(?:struct|union) \w+){_C}"
)
_INCOMPATIBLE_INIT = re.compile(
    rf"(?P<how>initialization of|assignment to) {_O}(?P<want>[^'’]+){_C}(?: {{aka [^}}]*}})? "
    rf"from incompatible pointer type {_O}(?P<have>[^'’]+){_C}"
)
# `drv.remove`, `drv.<anonymous>.remove` (a member inside an anonymous union, 6.12's .remove)
_NEAR_INIT = re.compile(rf"\(near initialization for {_O}(?P<var>\w+)\.(?P<path>[\w.<>]+){_C}\)")
_OWN_NOTE = re.compile(r"(?:declared here|previous (?:declaration|definition)|defined here)")
_VOID_USED = re.compile(r"void value not ignored as it ought to be")
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")
_MODPOST_UNDEF = re.compile(r'"(?P<name>[A-Za-z_]\w*)" \[[^\]]*\] undefined!')
_MODPOST_GPL = re.compile(rf"uses GPL-only symbol {_Q}")

SourceReader = Callable[[Path], str | None]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def variable_type(source: str, var: str) -> str | None:
    """`struct platform_driver` for `static struct platform_driver var = {`, `struct class`
    for `static struct class *var;` (or a parameter `struct class *var)`) in C source."""
    m = re.search(
        rf"\b(struct|union)\s+(\w+)\s*(?:\*\s*)*(?:(?:const|__\w+|\w+_ro_after_init)\s+)*"
        rf"{re.escape(var)}\s*(?:\[[^\]]*\]\s*)?[=;,)]",
        source,
    )
    return f"{m.group(1)} {m.group(2)}" if m else None


_MEMBER_STORE = re.compile(r"(?P<var>\w+)\s*(?:->|\.)\s*(?P<member>\w+)\s*=[^=]")


def _assignment_mention(
    file: str,
    num: int,
    text: str,
    want: str,
    have: str,
    source_root: Path | None,
    read: SourceReader,
) -> Mention | None:
    """`var->member = fn;` on the reported line: the member of var's struct type."""
    source = read(Path(file) if file.startswith("/") or source_root is None else source_root / file)
    lines = source.splitlines() if source else []
    if not 0 < num <= len(lines):
        return None
    store = _MEMBER_STORE.search(lines[num - 1])
    if store is None or source is None:
        return None
    container = variable_type(source, store.group("var"))
    if container is None:
        return None
    detail = f"the member's type is '{want}', the value's '{have}'"
    return Mention(store.group("member"), "ops-member", text, file, num, container, detail)


def _called_at(
    file: str, num: int, col: int, source_root: Path | None, read: SourceReader
) -> str | None:
    """The function called where gcc's column points (`ret = foo(x);`: foo)."""
    source = read(Path(file) if file.startswith("/") or source_root is None else source_root / file)
    lines = source.splitlines() if source else []
    if not 0 < num <= len(lines):
        return None
    text = lines[num - 1].expandtabs(8)  # gcc counts display columns, tab stops of 8
    start = max(0, col - 1)
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    call = _CALL.search(text, start)
    return call.group(1) if call else None


def _own_file(file: str, source_root: Path | None) -> bool:
    """A diagnostic's file that belongs to the module (relative, or under its tree)."""
    if not file.startswith("/"):
        return True
    return source_root is not None and Path(file).is_relative_to(source_root)


def mentions(
    lines: Iterable[str],
    source_root: Path | None = None,
    read: SourceReader = _read,
) -> list[Mention]:
    """The kernel identifiers named by the errors and warnings in a build's output, once each,
    in the order they first appear. source_root: the directory make compiled in (the M=
    directory), to find the module's own files named by relative paths."""
    found: dict[tuple[str | None, str], Mention] = {}
    own: set[str] = set()
    last: Mention | None = None  # the mention of the previous error/warning, for its notes
    pending_init: tuple[str, int, str, str, str] | None = None  # file, line, msg, want, have

    def add(m: Mention) -> None:
        nonlocal last
        last = m
        key = (m.container, m.identifier)
        seen = found.get(key)
        # Keep the first mention, unless it was reported inside a kernel header and this
        # one is in the module's own file (the line the user has to change).
        if seen is None or (
            m.file
            and _own_file(m.file, source_root)
            and not (seen.file and _own_file(seen.file, source_root))
        ):
            found[key] = m

    inside = f"{source_root}/" if source_root is not None else None
    for raw in lines:
        line = raw.rstrip("\n")
        if inside:  # the module's files, named as the user knows them
            line = line.replace(inside, "")
        d = _DIAG.match(line)
        if d:
            file, num, sev, msg = (
                d.group("file"),
                int(d.group("line")),
                d.group("sev"),
                d.group("msg"),
            )
            if sev == "note":
                near = _NEAR_INIT.search(msg)
                if near and pending_init is not None:
                    add(_ops_mention(pending_init, near, source_root, read))
                    pending_init = None
                elif last is not None and _OWN_NOTE.search(msg) and _own_file(file, source_root):
                    own.add(last.identifier)
                continue
            last, pending_init = None, None
            text = line[line.index(file) :]
            init = _INCOMPATIBLE_INIT.search(msg)
            if init and init.group("how") == "assignment to":
                store = _assignment_mention(
                    file, num, text, init.group("want"), init.group("have"), source_root, read
                )
                if store is not None:
                    add(store)
                continue
            if init:
                pending_init = (file, num, text, init.group("want"), init.group("have"))
                continue
            member = _MEMBER.search(msg) or _CLANG_MEMBER.search(msg)
            if member:
                add(
                    Mention(
                        member.group("name"), "member", text, file, num, member.group("container")
                    )
                )
                continue
            if _VOID_USED.search(msg):  # a function that returns void now
                col = int(d.group("col") or 0)
                called = _called_at(file, num, col, source_root, read)
                if called:
                    add(Mention(called, "function", text, file, num))
                continue
            for pattern, kind in _RULES:
                m = pattern.search(msg)
                if m:
                    add(Mention(m.group("name"), kind, text, file, num))
                    break
            continue
        o = _OBJTOOL.match(line)
        if o:
            add(
                Mention(
                    o.group("name"), "objtool", line[line.index(o.group("file")) :], o.group("file")
                )
            )
            continue
        mp = _MODPOST.match(line)
        if mp:
            m = _MODPOST_UNDEF.search(mp.group("msg")) or _MODPOST_GPL.search(mp.group("msg"))
            if m:
                add(Mention(m.group("name"), "symbol", _PREFIX.sub("", line)))
    return [m for key, m in found.items() if m.identifier not in own or m.container]


def _ops_mention(
    init: tuple[str, int, str, str, str],
    near: re.Match[str],
    source_root: Path | None,
    read: SourceReader,
) -> Mention:
    file, num, text, want, have = init
    var = near.group("var")
    path = ".".join(p for p in near.group("path").split(".") if p != "<anonymous>")
    src_path = Path(file) if file.startswith("/") or source_root is None else source_root / file
    source = read(src_path)
    container = variable_type(source, var) if source else None
    detail = f"the member's type is '{want}', the initializer's '{have}'"
    if container is None:  # cannot tell which struct: look the member name up as it is
        return Mention(path, "ops-member", text, file, num, None, detail)
    return Mention(path.split(".")[0], "ops-member", text, file, num, container, detail)
