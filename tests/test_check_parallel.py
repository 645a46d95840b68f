"""run_many's split over processes: this process from the front, a child from the back."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbuild_py.check.parallel import run_many


@pytest.mark.headers
@pytest.mark.parametrize("jobs", [2, 3])
def test_both_ends_meet_without_gaps_or_repeats(built_hello: Path, tmp_path: Path,
                                                jobs: int) -> None:  # fmt: skip
    bad = tmp_path / "bad.ko"
    bad.write_bytes(b"\x7fELF truncated")
    paths = []
    for i in range(97):  # distinct names, so a repeated or missing one shows
        p = tmp_path / f"m{i}.ko"
        p.symlink_to(built_hello)
        paths.append(bad if i % 13 == 5 else p)
    one = list(run_many(paths, None, jobs=1))
    many = list(run_many(paths, None, jobs=jobs))
    assert [o.path for o in many] == [str(p) for p in paths]
    assert many == one
    assert sum(o.error is not None for o in many) == 8
