# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m erase_diffusion.demo $(DEMO_ARGS)

# The studio's browser test drives Debian's chromium (playwright cannot download a browser here); without it the
# test is skipped with that reason.
$(CHROMIUM):
	-(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo_out .pytest_cache
