# The README's two commands: `make demo` and `make test` (run as root on Debian 12).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kmod-py-installed
# The product as users install it: this checkout's wheel, installed (not editable) into a venv
# of its own. The integration tiers run its kmod-py (tests/conftest.py: kmod_py_bin).
WHEEL_VENV := .venv-wheel

.PHONY: setup system demo test test-slow lint wheel bench clean tiny-kernel

setup: system $(STAMP)

system:
	@sh scripts/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	@sh scripts/demo.sh

test: setup lint wheel
	KMOD_PY_BIN=$(CURDIR)/$(WHEEL_VENV)/bin/kmod-py $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Long-running tests (a clang-built kernel made from Debian's linux-source, its boot).
test-slow: setup wheel
	KMOD_PY_BIN=$(CURDIR)/$(WHEEL_VENV)/bin/kmod-py $(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# lint and types ([tool.mypy] in pyproject: kbuild_py, warn_unused_ignores), before pytest
lint: setup
	$(VENV)/bin/ruff check kbuild_py tests bench
	$(VENV)/bin/mypy

# A tiny kernel that trusts the tests' signing key (slow test: tests/test_signing_tiny_kernel.py).
# Built once per machine from Debian's linux-source-6.1 (~10-20 minutes on two cores), cached.
tiny-kernel: setup
	KMOD_PY_CACHE=$${KMOD_PY_CACHE:-/var/cache/kmod-py-tests} $(PY) tests/tinykernel.py

wheel: setup
	@$(PY) tests/wheelenv.py $(WHEEL_VENV)

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(WHEEL_VENV) demo dist build *.egg-info
