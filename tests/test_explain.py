"""kmod-py's API-drift explanations: diagnostics -> identifiers -> declarations per kernel.

Unit tier: real gcc-12/gcc-14 logs recorded from the suite's own drift modules (built against
Debian's 6.1 headers and the trixie-backports 7.x image), kernel-style header snippets, and a
pure-Python grep at the seam. Headers tier: lookups in the host's real Debian 6.1 headers.
The Docker tier (real 7.x image, kmod-py build/explain end to end) is in test_explain_e2e.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from kbuild_py.explain import decls, diagnostics, drift, render
from kbuild_py.explain.headers import HeaderTree, header_tree, lookup_all
from kbuild_py.explain.model import Declaration, Kernel, Lookup, Mention
from kbuild_py.explain.service import explain

DATA = Path(__file__).parent / "data" / "explain"


def _log(name: str, outdir: Path) -> list[str]:
    text = (DATA / name).read_text().replace("@OUTDIR@", str(outdir))
    return text.replace("@PROJECT@", str(outdir.parent)).splitlines()


def _names(mentions: Sequence[Mention]) -> dict[str, str]:
    return {m.name: m.kind for m in mentions}


# --- diagnostics ---------------------------------------------------------------------------


def test_gcc14_log_of_a_61_module_on_7x_names_every_kernel_identifier() -> None:
    found = diagnostics.mentions(_log("old-on-7.3.4.log", DATA), DATA)
    assert _names(found) == {
        "DEFINE_SEMAPHORE": "macro",
        "from_timer": "function",
        "timer": "identifier",
        "struct platform_driver.remove": "ops-member",
        "struct hid_driver.report_fixup": "ops-member",
        "no_llseek": "identifier",
        "strlcpy": "function",
        "class_create": "function",
        "drift_sem": "identifier",
        "drift_helpr": "function",
        "del_timer_sync": "function",
    }
    by_name = {m.name: m for m in found}
    # the line the user edits (drift_old.c), not the kernel header gcc reported first
    assert by_name["class_create"].file == "drift_old.c"
    assert "too many arguments" in by_name["class_create"].message
    ops = by_name["struct hid_driver.report_fixup"]
    assert ops.detail is not None and "const __u8 * (*)" in ops.detail
    assert (ops.file, ops.line) == ("drift_old.c", 51)


def test_gcc12_log_with_utf8_quotes_and_absolute_paths(tmp_path: Path) -> None:
    outdir = tmp_path / "proj" / ".kmod-py" / "6.1.0-57-amd64"
    outdir.mkdir(parents=True)
    (outdir / "drift_new.c").write_text((DATA / "drift_new.c").read_text())
    found = diagnostics.mentions(_log("new-on-6.1.log", outdir), outdir)
    names = _names(found)
    assert names["DEFINE_SEMAPHORE"] == "macro"  # passed 2 arguments, but takes just 1
    assert names["class_create"] == "macro"  # requires 2 arguments, but only 1 given
    assert names["timer_container_of"] == "function"
    assert names["struct platform_driver.remove"] == "ops-member"
    assert all(m.file is None or not m.file.startswith("/") for m in found)  # shown relative


def test_ops_member_without_readable_source_keeps_the_member_name() -> None:
    lines = [
        "m.c:9:19: error: initialization of 'void (*)(struct platform_device *)' from "
        "incompatible pointer type 'int (*)(struct platform_device *)' "
        "[-Wincompatible-pointer-types]",
        "m.c:9:19: note: (near initialization for 'drv.remove')",
    ]
    (m,) = diagnostics.mentions(lines, Path("/nonexistent"), read=lambda p: None)
    assert (m.identifier, m.container, m.kind) == ("remove", None, "ops-member")


def test_ops_member_inside_an_anonymous_union(tmp_path: Path) -> None:
    (tmp_path / "m.c").write_text("static struct platform_driver drv = {\n")
    lines = [
        "m.c:40:19: error: initialization of 'void (*)(struct platform_device *)' from "
        "incompatible pointer type 'int (*)(struct platform_device *)' "
        "[-Wincompatible-pointer-types]",
        "m.c:40:19: note: (near initialization for 'drv.<anonymous>.remove')",
    ]
    (m,) = diagnostics.mentions(lines, tmp_path)
    assert m.name == "struct platform_driver.remove"


def test_member_assignment_from_an_incompatible_pointer(tmp_path: Path) -> None:
    """vpoll-dkms: `vpoll_class->devnode = vpoll_devnode;` where devnode became const."""
    (tmp_path / "vpoll.c").write_text(
        "static struct class *vpoll_class;\n\nstatic int f(void)\n{\n"
        "\t\tvpoll_class->devnode = vpoll_devnode;\n}\n"
    )
    lines = [
        "vpoll.c:5:38: error: assignment to 'char * (*)(const struct device *, umode_t *)' "
        "{aka 'char * (*)(const struct device *, short unsigned int *)'} from incompatible "
        "pointer type 'char * (*)(struct device *, umode_t *)' {aka 'char * (*)(struct device "
        "*, short unsigned int *)'} [-Wincompatible-pointer-types]",
    ]
    (m,) = diagnostics.mentions(lines, tmp_path)
    assert (m.name, m.kind) == ("struct class.devnode", "ops-member")


def test_a_function_that_returns_void_now(tmp_path: Path) -> None:
    """Return type changed: gcc names no function, its column points at the call."""
    (tmp_path / "m.c").write_text("static int f(void)\n{\n\tint ret = i2c_del_driver(&d);\n}\n")
    lines = ["m.c:3:19: error: void value not ignored as it ought to be"]
    (m,) = diagnostics.mentions(lines, tmp_path)
    assert (m.name, m.kind, m.line) == ("i2c_del_driver", "function", 3)


def test_variable_type_of_an_initialized_struct() -> None:
    src = "static const struct file_operations fops = {\n.owner = THIS_MODULE,\n};\n"
    assert diagnostics.variable_type(src, "fops") == "struct file_operations"
    assert diagnostics.variable_type("int fops = 1;", "fops") is None
    assert diagnostics.variable_type("static struct class *cls;", "cls") == "struct class"
    assert (
        diagnostics.variable_type("int f(struct hid_device *hdev)", "hdev") == "struct hid_device"
    )


def test_modpost_objtool_clang_and_member_lines() -> None:
    lines = [
        'ERROR: modpost: "strlcpy" [/w/m.ko] undefined!',
        "ERROR: modpost: GPL-incompatible module m.ko uses GPL-only symbol 'kallsyms_lookup'",
        "m.o: warning: objtool: init_module(): Magic init_module() function name is deprecated",
        "m.c:5:3: error: call to undeclared function 'setup_timer'; ISO C99 and later do not "
        "support implicit function declarations [-Wimplicit-function-declaration]",
        "m.c:6:9: error: no member named 'data' in 'struct timer_list'",
        "m.c:7:9: error: 'struct class' has no member named 'owner'",
        "m.c:8:1: error: unknown type name 'pm_message_t'",
        "m.c:9:1: error: invalid use of undefined type 'struct proc_dir_entry'",
        "[7.3.4+deb13-amd64] m.c:10:2: error: 'HZ_X' undeclared (first use in this function)",
    ]
    got = {(m.name, m.kind) for m in diagnostics.mentions(lines)}
    assert got == {
        ("strlcpy", "symbol"),
        ("kallsyms_lookup", "symbol"),
        ("init_module", "objtool"),
        ("setup_timer", "function"),
        ("struct timer_list.data", "member"),
        ("struct class.owner", "member"),
        ("pm_message_t", "type"),
        ("proc_dir_entry", "struct"),
        ("HZ_X", "identifier"),
    }


def test_a_name_declared_in_the_modules_own_file_is_not_looked_up() -> None:
    lines = [
        "m.c:20:9: error: too many arguments to function 'my_helper'",
        "m.c:3:12: note: declared here",
        "m.c:21:9: error: too many arguments to function 'class_create'",
        "/usr/src/linux-headers-7.3.4+deb13-common/include/linux/device/class.h:226:29: "
        "note: declared here",
    ]
    assert [m.name for m in diagnostics.mentions(lines)] == ["class_create"]


def test_warnings_and_unrelated_lines_name_nothing() -> None:
    lines = [
        "  CC [M]  m.o",
        "m.c:3:5: warning: no previous prototype for 'f' [-Wmissing-prototypes]",
        "make[1]: *** [Makefile:2: m.o] Error 1",
        "m.c:18:17: error: expected ';' before '}' token",
    ]
    assert diagnostics.mentions(lines) == []


# --- declarations in header text ------------------------------------------------------------

HEADER = """\
/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_FAKE_H
#define _LINUX_FAKE_H

struct fake_ops {
	int (*probe)(struct device *dev);
	void (*remove)(struct device *dev,
		int flags);
	unsigned long data;
};

typedef struct fake_msg {
	int event;
} fake_msg_t;

typedef void (*fake_cb_t)(struct fake_ops *ops);

enum fake_mode {
	FAKE_MODE_A = 1,
	FAKE_MODE_B,
};

extern unsigned long volatile fake_jiffies;

/*
 * fake_create() - make one; fake_create(name) is a comment, not a declaration
 */
struct fake * __must_check fake_create(const char *name,
				int flags);
extern __printf(2, 3) int fake_printf(struct fake *f, const char *fmt, ...);

static inline int
fake_destroy(struct fake *f)
{
	return fake_create(NULL, 0) != NULL;
}

#define FAKE_DEFINE(_name, _n)		\\
	struct fake _name = { .n = _n }
#define FAKE_NONE NULL

#endif
"""


def _decls(name: str) -> list[Declaration]:
    lines = HEADER.splitlines()
    hits = [i for i, ln in enumerate(lines) if re.search(rf"\b{name}\b", ln)]
    return decls.declarations(lines, hits, name, "include/linux/fake.h")


@pytest.mark.parametrize(
    ("name", "kind", "signature", "line"),
    [
        (
            "fake_create",
            "function",
            "struct fake * __must_check fake_create(const char *name, int flags);",
            28,
        ),
        (
            "fake_printf",
            "function",
            "extern __printf(2, 3) int fake_printf(struct fake *f, const char *fmt, ...);",
            30,
        ),
        ("fake_destroy", "inline function", "static inline int fake_destroy(struct fake *f)", 32),
        ("FAKE_DEFINE", "macro", "#define FAKE_DEFINE(_name, _n)", 38),
        ("FAKE_NONE", "macro", "#define FAKE_NONE NULL", 40),
        ("fake_ops", "struct", "struct fake_ops {", 5),
        ("fake_msg_t", "typedef", "typedef struct fake_msg { … } fake_msg_t;", 12),
        ("fake_cb_t", "typedef", "typedef void (*fake_cb_t)(struct fake_ops *ops);", 16),
        ("FAKE_MODE_A", "enum constant", "FAKE_MODE_A = 1,", 19),
        ("fake_jiffies", "variable", "extern unsigned long volatile fake_jiffies;", 23),
    ],
)
def test_each_kind_of_declaration_is_recognised(
    name: str, kind: str, signature: str, line: int
) -> None:
    (d,) = _decls(name)
    assert (d.kind, d.signature, d.line) == (kind, signature, line)


def test_calls_comments_and_members_are_not_declarations() -> None:
    assert _decls("remove") == []  # a struct member, not a function
    assert _decls("data") == []
    # fake_create appears in a comment and in an inline body too: one declaration only
    assert [d.line for d in _decls("fake_create")] == [28]


def test_members_are_found_inside_a_struct_with_their_whole_declaration() -> None:
    (ops,) = _decls("fake_ops")
    remove = decls.member(ops, "remove")
    assert remove is not None
    assert remove.signature == "void (*remove)(struct device *dev, int flags);"
    assert remove.line == 7
    assert decls.member(ops, "data").signature == "unsigned long data;"  # type: ignore[union-attr]
    assert decls.member(ops, "owner") is None


def test_short_inline_bodies_are_kept_long_ones_elided() -> None:
    (d,) = _decls("fake_destroy")
    assert "return fake_create(NULL, 0) != NULL;" in d.text


# --- comparison, range and guard ------------------------------------------------------------

K61 = Kernel("6.1.0-57-amd64", (6, 1, 192))
K612 = Kernel("6.12.57+deb13-amd64", (6, 12, 57))
K73 = Kernel("7.3.4+deb13-amd64", (7, 3, 4))


def _d(text: str, kind: str = "function") -> Declaration:
    return Declaration(kind, text, "include/linux/x.h", 1)


def test_range_is_between_adjacent_kernels_and_the_guard_names_the_newer() -> None:
    m = Mention("class_create", "function", "")
    old = _d(
        "#define class_create(owner, name) \\\n({ __class_create(owner, name, &k); })", "macro"
    )
    new = _d("struct class * __must_check class_create(const char *name);")
    e = drift.compare(m, [Lookup(K73, new), Lookup(K61, old), Lookup(K612, new)], K73.release)
    assert [lk.kernel for lk in e.lookups] == [K61, K612, K73]  # version order
    (c,) = e.changes
    assert (c.before, c.after, c.what) == (K61, K612, "changed")
    assert c.guard == "#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 57)"
    assert e.verdict == "drift"


def test_removed_added_same_and_unknown() -> None:
    m = Mention("strlcpy", "function", "")
    d = _d("size_t strlcpy(char *, const char *, size_t);")
    assert [c.what for c in drift.compare(m, [Lookup(K61, d), Lookup(K73, None)]).changes] == [
        "removed"
    ]
    assert [c.what for c in drift.compare(m, [Lookup(K61, None), Lookup(K73, d)]).changes] == [
        "added"
    ]
    spaced = _d("size_t  strlcpy(char *,\n\tconst char *, size_t); /* legacy */")
    assert drift.compare(m, [Lookup(K61, d), Lookup(K73, spaced)]).verdict == "same"
    assert drift.compare(m, [Lookup(K61, None), Lookup(K73, None)]).verdict == "unknown"


def test_version_code_clamps_sublevel_and_equal_codes_have_no_guard() -> None:
    a, b = Kernel("a", (5, 4, 300)), Kernel("b", (5, 4, 301))
    assert a.code == b.code == (5 << 16) + (4 << 8) + 255
    e = drift.compare(
        Mention("f", "function", ""), [Lookup(a, _d("int f(void);")), Lookup(b, None)]
    )
    assert e.changes[0].guard is None


def test_inline_body_changes_are_not_api_changes() -> None:
    m = Mention("del_timer_sync", "function", "")
    one = _d(
        "static inline int del_timer_sync(struct timer_list *t)\n{\n\treturn a(t);\n}",
        "inline function",
    )
    two = _d(
        "static inline int del_timer_sync(struct timer_list *t)\n{\n\treturn b(t);\n}",
        "inline function",
    )
    assert drift.compare(m, [Lookup(K61, one), Lookup(K73, two)]).verdict == "same"


# --- the whole lookup through the grep seam ------------------------------------------------


def fake_grep(dirs: Sequence[Path], names: Sequence[str]) -> list[tuple[Path, int, str]]:
    """The seam's contract in pure Python: whole-word hits in the .h files of dirs."""
    word = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)")
    hits = []
    for d in dirs:
        for f in sorted(d.rglob("*.h")):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if word.search(line):
                    hits.append((f, i, line))
    return hits


def _fake_tree(root: Path, version: tuple[int, int, int], header: str) -> HeaderTree:
    (root / "include/linux").mkdir(parents=True)
    (root / "include/generated/uapi/linux").mkdir(parents=True)
    a, b, c = version
    (root / "include/generated/uapi/linux/version.h").write_text(
        f"#define LINUX_VERSION_CODE {(a << 16) + (b << 8) + c}\n"
        f"#define LINUX_VERSION_MAJOR {a}\n#define LINUX_VERSION_PATCHLEVEL {b}\n"
        f"#define LINUX_VERSION_SUBLEVEL {c}\n"
    )
    (root / "include/generated/utsrelease.h").write_text(f'#define UTS_RELEASE "{a}.{b}.{c}-x"\n')
    (root / "include/linux/fake.h").write_text(header)
    tree = header_tree(root)
    assert tree is not None
    return tree


def test_explain_with_two_fake_kernels(tmp_path: Path) -> None:
    newer = HEADER.replace(
        "int (*probe)(struct device *dev);", "int (*probe)(struct device *d, int x);"
    )
    newer = newer.replace("#define FAKE_NONE NULL\n", "")
    t1 = _fake_tree(tmp_path / "a", (6, 1, 10), HEADER)
    t2 = _fake_tree(tmp_path / "b", (6, 6, 0), newer)
    mentions = [
        Mention("probe", "ops-member", "m.c:3: …", "m.c", 3, "struct fake_ops"),
        Mention("FAKE_NONE", "identifier", "m.c:4: …", "m.c", 4),
        Mention("fake_create", "function", "m.c:5: …", "m.c", 5),
        Mention("my_typo", "function", "m.c:6: …", "m.c", 6),
    ]
    out = explain(mentions, [t2, t1], failing="6.6.0-x", run=fake_grep)
    assert [e.verdict for e in out] == ["drift", "drift", "same", "unknown"]
    assert out[0].lookups[0].declaration.signature == "int (*probe)(struct device *dev);"  # type: ignore[union-attr]
    assert out[1].changes[0].what == "removed"
    assert out[1].changes[0].guard == "#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)"
    text = "\n".join(render.render_text(out))
    assert "struct fake_ops.probe (ops-member) at m.c:3" in text
    assert "include/linux/fake.h:6  int (*probe)(struct device *d, int x);" in text
    assert (
        "fake_create (function): the same in every kernel at hand, no change between them: "
        "include/linux/fake.h:28" in text
    )
    assert text.startswith(
        "  explain: compared with the headers of 6.1.10-x (6.1.10), 6.6.0-x (6.6.0)"
    )
    assert "no kernel at hand declares my_typo (m.c:6): left unexplained" in text
    doc = render.to_json(out)
    assert doc[1]["kernels"][1] == {
        "release": "6.6.0-x",
        "spec": "",
        "version": "6.6.0",
        "version_code": 394752,
        "failing": True,
        "declaration": None,
        "absent": True,
        "note": None,
        "other_declarations": 0,
    }
    assert doc[3]["verdict"] == "unknown"


def test_member_of_a_struct_missing_in_one_kernel(tmp_path: Path) -> None:
    t1 = _fake_tree(tmp_path / "a", (6, 1, 10), HEADER)
    t2 = _fake_tree(tmp_path / "b", (6, 6, 0), "/* empty */\n")
    m = Mention("data", "member", "", container="struct fake_ops")
    (lk1,) = lookup_all(t1, [m], fake_grep)
    (lk2,) = lookup_all(t2, [m], fake_grep)
    assert lk1.declaration is not None and lk1.declaration.signature == "unsigned long data;"
    assert lk2.declaration is None and lk2.note == "struct fake_ops is not defined"


# --- the host's real Debian 6.1 headers ------------------------------------------------------


@pytest.mark.headers
def test_lookups_in_real_61_headers(host_kdir: Path) -> None:
    tree = header_tree(host_kdir)
    assert tree is not None and tree.kernel.version[:2] == (6, 1)
    asks = [
        Mention("class_create", "function", ""),
        Mention("strlcpy", "function", ""),
        Mention("del_timer_sync", "function", ""),
        Mention("DEFINE_SEMAPHORE", "macro", ""),
        Mention("no_llseek", "identifier", ""),
        Mention("timer_container_of", "function", ""),
        Mention("remove", "ops-member", "", container="struct platform_driver"),
        Mention("report_fixup", "ops-member", "", container="struct hid_driver"),
        Mention("data", "member", "", container="struct timer_list"),
    ]
    got = {m.name: lk for m, lk in zip(asks, lookup_all(tree, asks), strict=True)}

    def sig(name: str) -> tuple[str, str, str] | None:
        d = got[name].declaration
        return (d.kind, d.signature, d.file) if d else None

    assert sig("class_create") == (
        "macro",
        "#define class_create(owner, name)",
        "include/linux/device/class.h",
    )
    assert sig("strlcpy") == (
        "function",
        "size_t strlcpy(char *, const char *, size_t);",
        "include/linux/string.h",
    )
    assert sig("DEFINE_SEMAPHORE") == (
        "macro",
        "#define DEFINE_SEMAPHORE(name)",
        "include/linux/semaphore.h",
    )
    assert sig("no_llseek") == ("macro", "#define no_llseek NULL", "include/linux/fs.h")
    assert sig("struct platform_driver.remove") == (
        "member",
        "int (*remove)(struct platform_device *);",
        "include/linux/platform_device.h",
    )
    assert sig("struct hid_driver.report_fixup") == (
        "member",
        "__u8 *(*report_fixup)(struct hid_device *hdev, __u8 *buf, unsigned int *size);",
        "include/linux/hid.h",
    )
    assert sig("del_timer_sync")[1].endswith("del_timer_sync(struct timer_list *timer)")  # type: ignore[index]
    assert sig("timer_container_of") is None
    assert "has no member data" in got["struct timer_list.data"].note
    # the file:line is the real one
    d = got["class_create"].declaration
    assert d is not None
    real = (Path(tree.roots[0][1]) / d.file).read_text().splitlines()[d.line - 1]
    assert real.startswith("#define class_create(owner, name)")


def test_cli_explain_refuses_a_directory_without_a_module(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kbuild_py.cli import app

    res = CliRunner().invoke(app, ["explain", str(tmp_path)])
    assert res.exit_code == 2
    assert "error:" in res.output


def test_log_exit_reads_kmod_pys_last_line(tmp_path: Path) -> None:
    from kbuild_py.explain.service import log_exit

    log = tmp_path / "build.log"
    assert log_exit(log) is None
    log.write_text("# kernel x\nmake: *** [x] Error 2\n# exit 2\n")
    assert log_exit(log) == 2
    log.write_text("# kernel x\n  CC [M]  m.o\n")  # interrupted: no exit line
    assert log_exit(log) is None


def test_lookups_are_remembered_per_tree_and_only_new_names_are_grepped(tmp_path: Path) -> None:
    from kbuild_py.explain.headers import HeaderIndex

    tree = _fake_tree(tmp_path / "a", (6, 1, 10), HEADER)
    asked: list[list[str]] = []

    def counting(dirs: Sequence[Path], names: Sequence[str]) -> list[tuple[Path, int, str]]:
        asked.append(list(names))
        return fake_grep(dirs, names)

    store = tmp_path / "store.json"
    first = HeaderIndex(tree, counting, store)
    m1 = [Mention("fake_create", "function", ""), Mention("nope", "function", "")]
    assert lookup_all(tree, m1, counting, first)[0].declaration is not None
    lookup_all(tree, m1, counting, first)  # the same names again: no grep
    assert asked == [["fake_create", "nope"]]
    second = HeaderIndex(tree, counting, store)  # a later run, from the store
    got = lookup_all(tree, [*m1, Mention("FAKE_NONE", "identifier", "")], counting, second)
    assert asked == [["fake_create", "nope"], ["FAKE_NONE"]]
    assert [lk.declaration is not None for lk in got] == [True, False, True]
    assert got[0].declaration == first.declarations("fake_create")[0]


def test_images_prune_removes_explains_header_copies_and_lookups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kbuild_py.images.kernel import prune

    class Nothing:  # a Docker client with no images and no containers (the seam's fake)
        def list(self, **_kw: object) -> list[object]:
            return []

    class FakeClient:
        images = Nothing()
        containers = Nothing()

    monkeypatch.setenv("KMOD_PY_CACHE", str(tmp_path))
    (tmp_path / "headers/7.3.4+deb13-amd64/include/linux").mkdir(parents=True)
    (tmp_path / "headers/.7.3.4+deb13-amd64.lock").write_text("")
    (tmp_path / "explain").mkdir()
    (tmp_path / "explain/7.3.4+deb13-amd64-0123.json").write_text("{}")
    report = prune(FakeClient())
    assert report.trees == ["headers/7.3.4+deb13-amd64"]
    assert not (tmp_path / "headers/7.3.4+deb13-amd64").exists()
    assert not (tmp_path / "explain").exists()


def test_a_kernel_whose_headers_cannot_be_read_is_skipped_with_a_message(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from docker.errors import APIError

    from kbuild_py.explain.service import trees_for_targets

    class Broken:  # the Docker seam's fake: the daemon answers with an error
        def get(self, name: str) -> None:
            raise APIError("500 Server Error: boom")

    target = SimpleNamespace(
        spec="image:x",
        release="9.9.9-x",
        where="kmod-py/kernel:9.9.9-x",
        tree=SimpleNamespace(srcarch="x86", path=tmp_path),
        runner=SimpleNamespace(client=SimpleNamespace(images=Broken())),
    )
    said: list[str] = []
    assert trees_for_targets([target], said.append) == []
    assert said == ["explain: cannot read the headers of 9.9.9-x: 500 Server Error: boom"]
