"""Recognising a declaration around a line of a header, without a C parser. Pure.

The kernel's headers follow one style closely enough for line-based rules: top-level
declarations start in column 0, macros are `#define NAME` with backslash continuations,
struct bodies close with `};`, members and enum constants are indented. A search hit
(`grep -w NAME`) is turned into a Declaration when the line around it declares NAME;
hits in comments, calls inside inline bodies, struct members that merely share the name
and macro bodies that use it are rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from kbuild_py.explain.model import Declaration

_NOT_A_TYPE = {
    "return",
    "if",
    "while",
    "for",
    "switch",
    "else",
    "do",
    "case",
    "goto",
    "sizeof",
    "typeof",
    "__typeof__",
    "define",
    "undef",
    "ifdef",
    "ifndef",
    "defined",
}
_PREFIX_TOKEN = re.compile(r"\s*(?:[A-Za-z_]\w*(?:\s*\((?:[^()]|\([^()]*\))*\))?|\*)")
_INLINE_BODY_LINES = 6  # an inline function's body is shown when it is this short
_BACK, _FORWARD = 4, 40  # how far a statement may reach around its hit line


def _is_comment(line: str) -> bool:
    s = line.lstrip()
    return s.startswith(("*", "/*", "//"))


def _ends_statement(line: str) -> bool:
    s = _strip_comment(line).rstrip()
    return not s or s.endswith((";", "{", "}", ":")) or s.startswith("#")


def _strip_comment(line: str) -> str:
    line = re.sub(r"/\*.*?\*/", " ", line)
    line = line.split("//", 1)[0]
    return line.split("/*", 1)[0]


def statement(lines: Sequence[str], idx: int) -> tuple[int, int]:
    """(first, last) line indices of the C statement around line idx: back to the line after
    one that ends a statement, forward to a `;` or `{` outside parentheses."""
    first = idx
    while first > 0 and idx - first < _BACK:
        prev = lines[first - 1]
        if _ends_statement(prev) or _is_comment(prev) or prev.rstrip().endswith(("*/", "\\")):
            break
        first -= 1
    depth = 0
    for last in range(first, min(len(lines), first + _FORWARD)):
        for ch in _strip_comment(lines[last]):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch in ";{" and depth <= 0:
                return first, last
    return first, idx


def _flat(lines: Sequence[str], first: int, last: int) -> str:
    return " ".join(" ".join(_strip_comment(ln) for ln in lines[first : last + 1]).split())


def _block_end(lines: Sequence[str], idx: int) -> int:
    """Index of the line closing the brace block that opens at or after line idx."""
    depth, opened = 0, False
    for i in range(idx, len(lines)):
        for ch in _strip_comment(lines[i]):
            if ch == "{":
                depth, opened = depth + 1, True
            elif ch == "}":
                depth -= 1
                if opened and depth == 0:
                    return i
    return len(lines) - 1


def _text(lines: Sequence[str], first: int, last: int) -> str:
    return "\n".join(ln.rstrip() for ln in lines[first : last + 1])


def macro_at(lines: Sequence[str], idx: int, name: str, rel: str) -> Declaration | None:
    if not re.match(rf"\s*#\s*define\s+{re.escape(name)}(?![\w])", lines[idx]):
        return None
    last = idx
    while last + 1 < len(lines) and lines[last].rstrip().endswith("\\"):
        last += 1
    return Declaration("macro", _text(lines, idx, last), rel, idx + 1)


def tagged_at(lines: Sequence[str], idx: int, name: str, rel: str) -> Declaration | None:
    """`struct NAME {` (also union/enum, typedef'd or not): the whole definition."""
    m = re.match(rf"(?:typedef\s+)?(struct|union|enum)\s+{re.escape(name)}\s*(\{{|$)", lines[idx])
    if not m:
        return None
    if not m.group(2) and not (idx + 1 < len(lines) and lines[idx + 1].strip() == "{"):
        return None
    return Declaration(m.group(1), _text(lines, idx, _block_end(lines, idx)), rel, idx + 1)


def typedef_at(lines: Sequence[str], idx: int, name: str, rel: str) -> Declaration | None:
    n = re.escape(name)
    m = re.match(rf"\}}\s*{n}\s*;", lines[idx])
    if m:  # the closing line of `typedef struct { ... } NAME;`
        depth = 0
        for first in range(idx, max(-1, idx - 400), -1):
            depth += _strip_comment(lines[first]).count("}") - _strip_comment(lines[first]).count(
                "{"
            )
            if depth == 0 and lines[first].startswith("typedef"):
                head = lines[first].rstrip()
                return Declaration("typedef", f"{head} … }} {name};", rel, first + 1)
        return None
    first, last = statement(lines, idx)
    flat = _flat(lines, first, last)
    if not flat.startswith("typedef ") or lines[first][:1].isspace():
        return None
    if re.search(rf"\b{n}\s*(\[[^\]]*\])?\s*;$|\(\s*\*\s*{n}\s*\)|\b{n}\s*\(", flat):
        return Declaration("typedef", _text(lines, first, last), rel, first + 1)
    return None


def function_at(lines: Sequence[str], idx: int, name: str, rel: str) -> Declaration | None:
    """A top-level prototype or inline definition of NAME (not a call, not a member)."""
    first, last = statement(lines, idx)
    if lines[first][:1].isspace() or lines[first].startswith(("#", "}")):
        return None
    flat = _flat(lines, first, last)
    m = re.search(rf"\b{re.escape(name)}\s*\(", flat)
    if not m or "=" in flat[: m.start()] or not _type_prefix(flat[: m.start()]):
        return None
    if flat.rstrip().endswith(";"):
        return Declaration("function", _text(lines, first, last), rel, first + 1)
    end = _block_end(lines, last)
    if end - last <= _INLINE_BODY_LINES:
        return Declaration("inline function", _text(lines, first, end), rel, first + 1)
    head = _text(lines, first, last)
    return Declaration("inline function", head + "\n\t…\n}", rel, first + 1)


def _type_prefix(prefix: str) -> bool:
    """What precedes NAME( is a return type: words, attributes with arguments, stars."""
    rest, words = prefix, []
    while rest.strip():
        m = _PREFIX_TOKEN.match(rest)
        if not m:
            return False
        tok = m.group(0).strip()
        if tok != "*":
            words.append(tok.split("(", 1)[0].strip())
        rest = rest[m.end() :]
    return bool(words) and words[0] not in _NOT_A_TYPE and not any(w in _NOT_A_TYPE for w in words)


def variable_at(lines: Sequence[str], idx: int, name: str, rel: str) -> Declaration | None:
    first, last = statement(lines, idx)
    if lines[first][:1].isspace() or lines[first].startswith("#"):
        return None
    flat = _flat(lines, first, last)
    n = re.escape(name)
    if re.match(rf"(?:extern\s+)?(?:[\w]+\s*\**\s+)+\**\s*{n}\s*(\[[^\]]*\])?\s*;$", flat):
        if not flat.startswith(("return ", "typedef ")):
            return Declaration("variable", _text(lines, first, last), rel, first + 1)
    return None


def enum_constant_at(lines: Sequence[str], idx: int, name: str, rel: str) -> Declaration | None:
    line = _strip_comment(lines[idx])
    if not re.match(rf"\s+{re.escape(name)}\s*(=[^,]*)?,?\s*$", line):
        return None
    for back in range(idx - 1, max(-1, idx - 300), -1):
        above = lines[back]
        if above[:1] not in ("", " ", "\t", "#", "/", "*") or above.startswith("}"):
            if re.match(r"(?:typedef\s+)?enum\b[^;]*\{", above) or above.startswith("enum"):
                return Declaration("enum constant", lines[idx].strip(), rel, idx + 1)
            return None
    return None


_RECOGNISERS = (macro_at, tagged_at, typedef_at, function_at, variable_at, enum_constant_at)
_INDENTED = (macro_at, enum_constant_at)


def declarations(
    lines: Sequence[str], hits: Iterable[int], name: str, rel: str
) -> list[Declaration]:
    """Every declaration of NAME at the given (0-based) hit lines of one file."""
    out: list[Declaration] = []
    seen: set[int] = set()
    for idx in hits:
        if _is_comment(lines[idx]):
            continue
        # Top-level declarations start in column 0; an indented hit is a use in a body or
        # a struct member, unless it is an enum constant or an indented `# define`.
        indented = lines[idx][:1].isspace()
        for recognise in _INDENTED if indented else _RECOGNISERS:
            decl = recognise(lines, idx, name, rel)
            if decl is not None and decl.line not in seen:
                seen.add(decl.line)
                out.append(decl)
                break
    return out


def candidate(name: str) -> Callable[[str], bool]:
    """A cheap test of a hit line (from grep's output, before the file is read): can a
    declaration of NAME start or end here? Column-0 lines can; indented ones only as an
    enum constant or an indented `# define`."""
    n = re.escape(name)
    word = re.compile(rf"(?<!\w){n}(?!\w)")
    indented = re.compile(rf"\s*#\s*define\s+{n}(?!\w)|\s+{n}\s*(=|,|$|/[*/])")

    def test(text: str) -> bool:
        if not word.search(text):
            return False
        return not text[:1].isspace() or bool(indented.match(text))

    return test


def member(struct: Declaration, name: str) -> Declaration | None:
    """The declaration of member NAME inside a struct/union definition."""
    lines = struct.text.splitlines()
    n = re.escape(name)
    pattern = re.compile(
        rf"\(\s*\*\s*(?:const\s+)?{n}\s*\)|\b{n}\s*(\[[^\]]*\])?\s*(:\s*\w+\s*)?[;,]"
    )
    for idx in range(1, len(lines) - 1):
        if _is_comment(lines[idx]) or not re.search(rf"\b{n}\b", lines[idx]):
            continue
        first, last = statement(lines, idx)
        flat = _flat(lines, first, last)
        if pattern.search(flat) and not flat.startswith(("struct " + name + " {",)):
            text = "\n".join(ln.strip() for ln in lines[first : last + 1])
            return Declaration("member", text, struct.file, struct.line + first)
    return None


def rank(decl: Declaration) -> tuple[int, int, str, int]:
    """Which declaration of a name to show first: prototypes and macros before inline
    definitions (often the !CONFIG stub), include/linux before other headers, then uapi."""
    f = decl.file
    where = (
        3
        if "/uapi/" in f
        else 2
        if "/generated/" in f
        else 0
        if f.startswith("include/linux/")
        else 1
    )
    return (1 if decl.kind == "inline function" else 0, where, f, decl.line)
