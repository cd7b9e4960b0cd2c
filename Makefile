# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK  := requirements.lock

CHROMIUM := /usr/bin/chromium

.PHONY: install demo test lock compat clean

# Exactly the versions the lock names: pip and setuptools first, then the project (built without isolation, so its
# build uses the locked setuptools, not whatever is newest today).
$(STAMP): pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) pip setuptools
	$(PY) -m pip install -q -c $(LOCK) --no-build-isolation -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m erase_diffusion.demo $(DEMO_ARGS)

# The studio's browser test drives Debian's chromium (playwright cannot download a browser here); without it the
# test is skipped with that reason.
$(CHROMIUM):
	-(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

# Two workers share the two cores (one torch thread each, see tests/conftest.py); tests that reuse the default
# erasure stay on one worker so it is trained once.
test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -q -n 2 --dist loadgroup

# Re-resolve pyproject.toml's ranges in a clean venv and write what was installed, every package, as the new lock.
lock:
	rm -rf .venv-lock
	python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip setuptools
	.venv-lock/bin/python -m pip install -q -e '.[test]'
	( echo "# Written by 'make lock' on $$(date -u +%Y-%m-%d): every package of the environment, pinned. Edit pyproject.toml, not this."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable ) > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock

# Erasures load bit-exact under transformers 4.57 with diffusers too (a throwaway venv; minutes, so not in make test).
compat: $(STAMP)
	$(PY) scripts/compat_check.py

clean:
	rm -rf $(VENV) .venv-lock .venv-compat demo_out .pytest_cache
