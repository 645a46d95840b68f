"""kmod-py kernels / kmod-py images: which kernels can be targeted, and their images."""

from __future__ import annotations

from dataclasses import asdict

import typer


def kernels(
    suite: str = typer.Option(None, "--suite", help="List what a Debian suite offers instead."),
    mirror: str = typer.Option(None, "--mirror", help="Debian mirror (default: the host's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List kernels usable now (host build trees, built images), or a suite's kernels."""
    from kbuild_py.kernels import resolve as k
    from kbuild_py.report.table import table

    if suite:
        current, releases = k.suite_kernels(suite, mirror)
        built = _built_releases()
        spec = f"debian:{suite}"
        if as_json:
            _json([{"release": r, "suite": origin, "spec": spec if r == current else r,
                    "current": r == current, "image_built": r in built}
                   for r, origin in releases])
            return
        rows = [
            [r, origin, spec if r == current else "", "image built" if r in built else ""]
            for r, origin in releases
        ]
        typer.echo(table(["RELEASE", "SUITE", "SPEC", "STATE"], rows))
        return
    images = _images_or_note()
    if as_json:
        _json([asdict(r) for r in k.usable_kernels(images)])
        return
    rows = [[r.spec, r.release, r.compiler, r.where] for r in k.usable_kernels(images)]
    if rows:
        typer.echo(table(["SPEC", "RELEASE", "COMPILER", "WHERE"], rows))
    else:
        typer.echo("no usable kernel yet")
    typer.echo("\nbuilt on demand: debian:SUITE[/FLAVOUR] (SUITE: bullseye, bookworm, "
               "bookworm-backports, trixie, trixie-backports, sid; FLAVOUR: amd64, arm64, cloud, "
               "rt, cloud-arm64, rt-arm64), a Debian release, image:NAME[:TAG]\n"
               "(`kmod-py kernels --suite trixie` lists a suite's releases)")


def images(
    build: list[str] = typer.Option(  # noqa: B008
        [], "--build", help="Build the image for a kernel spec (repeatable)."
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Remove what killed kmod-py runs left (containers, untagged "
        "images, stale tree snapshots)."
    ),
    prune_all: bool = typer.Option(
        False, "--all", help="With --prune: also every kmod-py kernel and base image not in use."
    ),
    mirror: str = typer.Option(None, "--mirror", help="Debian mirror (default: the host's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the image list as JSON."),
) -> None:
    """List, build (--build SPEC) or remove (--prune) kmod-py's kernel-headers images."""
    from kbuild_py.images import kernel as im
    from kbuild_py.kernels.resolve import resolve_spec
    from kbuild_py.report.table import human_size, table

    if prune_all and not prune:
        from kbuild_py.errors import UsageError

        raise UsageError("--all only goes with --prune", "kmod-py images --prune --all")
    if prune:
        rep = im.prune(everything=prune_all)
        typer.echo(f"removed {len(rep.images)} image(s), {len(rep.containers)} leftover "
                   f"container(s), {len(rep.trees)} tree snapshot(s)")
        for name in rep.images:
            typer.echo(f"  {name}")
        for name in rep.kept:
            typer.echo(f"  kept {name}")
        return
    for spec in build:
        t = resolve_spec(spec, mirror=mirror, progress=lambda line: typer.echo(line, err=True))
        typer.echo(f"{spec}: {t.where} ({t.release}, {t.compiler or 'compiler unknown'})")
    if build:
        return
    if as_json:
        _json([asdict(i) for i in im.list_images()])
        return
    rows = [
        [i.name, ", ".join(t.split(":", 1)[1] for t in i.tags if t != i.name), i.compiler,
         human_size(i.size), i.created.replace("T", " ")]
        for i in im.list_images()
    ]
    if not rows:
        typer.echo("no kmod-py images yet: `kmod-py images --build debian:bookworm` builds one")
        return
    typer.echo(table(["IMAGE", "ALIASES", "COMPILER", "SIZE", "CREATED"], rows))


def _json(doc: object) -> None:
    import json

    from kbuild_py.trust.fs import json_safe

    typer.echo(json.dumps(json_safe(doc), indent=2))


def _images_or_note() -> list:
    from kbuild_py.errors import KmodError
    from kbuild_py.images import kernel as im

    try:
        return im.list_images()
    except KmodError as err:
        typer.echo(f"note: container kernels not listed: {err.message}", err=True)
        return []


def _built_releases() -> set[str]:
    return {i.release for i in _images_or_note()}
