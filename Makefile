# The README's two commands: `make demo` and `make test` (run as root on Debian 12).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kmod-py-installed

.PHONY: setup system demo test test-slow lint bench clean tiny-kernel

setup: system $(STAMP)

system:
	@sh scripts/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	@sh scripts/demo.sh

test: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Long-running tests (a clang-built kernel made from Debian's linux-source, its boot).
test-slow: setup
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check kbuild_py tests bench

# A tiny kernel that trusts the tests' signing key (slow test: tests/test_signing_tiny_kernel.py).
# Built once per machine from Debian's linux-source-6.1 (~10-20 minutes on two cores), cached.
tiny-kernel: setup
	KMOD_PY_CACHE=$${KMOD_PY_CACHE:-/var/cache/kmod-py-tests} $(PY) tests/tinykernel.py

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo dist build *.egg-info
