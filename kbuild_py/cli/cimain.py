"""The two commands CI jobs run, `kmod-py ci prepare` and `kmod-py ci save`, with a way in
that does not need typer: a job runs them once per kernel next to the build, and typer's
start-up (~0.15 s, more on a busy runner) would be most of their cost. main_fast accepts
exactly `--kernel SPEC` (or `-k SPEC`, `--kernel=SPEC`) and `--mirror URL`; anything else
returns None and typer parses the command line. Errors go through kbuild_py.cli.base's handler.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from kbuild_py import __version__
from kbuild_py.cli.base import exit_code_for

Say = Callable[[str], None]


def say(line: str) -> None:
    print(line, flush=True)


def run_prepare(kernel: str, mirror: str | None, say: Say = say) -> int:
    """Resolve the job's kernel spec and load its saved kernel-headers image; on GitHub,
    write the release and the cache key to $GITHUB_OUTPUT."""
    # lazily, for start-up: the Docker seam and the resolver only when the command runs
    from kbuild_py.ci import images
    from kbuild_py.errors import MirrorError
    from kbuild_py.kernels.resolve import place
    from kbuild_py.seams.docker import docker_client

    try:
        where = place(kernel, mirror=mirror)
    except MirrorError as e:
        # The build decides (it falls back to the last image built for a suite).
        print(f"warning: cannot resolve {kernel} now: {e.message}", file=sys.stderr)
        return 0
    if where.where == "kernel-image":
        done = images.load(docker_client(), kernel, where.release)
    else:
        done = images.Prepared(kernel, where.release, f"{kernel} is {where.release} "
                               f"({where.where}: no kmod-py image to restore)")
    say(f"kmod-py {__version__}: {done.message}")
    out = os.environ.get("GITHUB_OUTPUT")
    if out:
        with open(out, "a") as f:
            for k, v in done.outputs(os.environ.get("KMOD_PY_INSTALL", "")).items():
                f.write(f"{k}={v}\n")
    return 0


def run_save(kernel: str, mirror: str | None, say: Say = say) -> int:
    """docker save the job's kernel image into kmod-py's cache for the next job."""
    # lazily, for start-up: the Docker seam and the resolver only when the command runs
    from kbuild_py.ci import images
    from kbuild_py.kernels.resolve import place
    from kbuild_py.seams.docker import docker_client

    if os.environ.get("KMOD_PY_SAVE_IMAGES", "1") == "0":
        say("kernel images are not saved (KMOD_PY_SAVE_IMAGES=0)")
        return 0
    where = place(kernel, mirror=mirror)
    if where.where != "kernel-image":
        say(f"{kernel} is {where.release} ({where.where}): no kmod-py image to save")
        return 0
    images.save(docker_client(), kernel, where.release, say)
    return 0


def parse_fast(args: Sequence[str]) -> dict[str, str | None] | None:
    """{"kernel", "mirror"} from the plain forms of the options, else None."""
    names = {"--kernel": "kernel", "-k": "kernel", "--mirror": "mirror"}
    found: dict[str, str | None] = {"mirror": None}
    rest = list(args)
    while rest:
        token = rest.pop(0)
        name, eq, value = token.partition("=")
        if eq and name.startswith("--") and name in names:
            pass
        elif token in names and rest:
            name, value = token, rest.pop(0)
        else:
            return None
        key = names[name]
        if not value or value.startswith("-") or found.get(key) is not None:
            return None
        found[key] = value
    return found if found.get("kernel") else None


def main_fast(args: Sequence[str]) -> int | None:
    """`kmod-py ci prepare|save ARGS` without typer; None when typer must parse ARGS."""
    if not args or args[0] not in ("prepare", "save"):
        return None
    opts = parse_fast(args[1:])
    if opts is None:
        return None
    run = run_prepare if args[0] == "prepare" else run_save
    try:
        return run(str(opts["kernel"]), opts["mirror"])
    except (KeyboardInterrupt, Exception) as err:
        return exit_code_for(err)
