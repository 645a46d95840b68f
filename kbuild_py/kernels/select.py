"""Which kernels a command targets: --kdir, --kernel specs, kmod.toml, or the running kernel."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from kbuild_py.kernels import host, resolve
from kbuild_py.kernels.spec import Target


def choose_specs(cli_specs: Sequence[str], project_specs: Sequence[str]) -> list[str]:
    """--kernel wins over kmod.toml; neither means the running kernel. Duplicates dropped."""
    specs = list(cli_specs) or list(project_specs) or ["host"]
    return list(dict.fromkeys(specs))


def resolve_targets(
    cli_specs: Sequence[str],
    kdir: Path | None,
    project_specs: Sequence[str] = (),
    mirror: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Target]:
    if kdir is not None:
        return [host.host_target(spec=str(kdir), kdir=kdir)]
    out: dict[str, Target] = {}
    for spec in choose_specs(cli_specs, project_specs):
        target = resolve.resolve_spec(spec, mirror=mirror, progress=progress)
        if target.release in out:
            # Two specs naming one release would share PATH/.kmod-py/<release>/: build it once.
            if progress:
                progress(
                    f"{spec} is {target.release}, already targeted as {out[target.release].spec}"
                )
            continue
        out[target.release] = target
    return list(out.values())
