# sarslide — two commands on a fresh machine (see README):
#   make demo   create .venv, install, execute every notebook on the demo profile, build the book
#   make test   create .venv if missing, check the notebooks' code, run the package tests,
#               the notebooks under nbmake, a book build, and check the built site's figures
# More: make format | lab | site-check | colab-check | clean  (README, "Working on the book")
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BUILD  := _build
export SARSLIDE_PROFILE ?= demo
# Cubes, chips, checkpoints and results of the notebooks live inside the checkout (ignored
# by git), so a fresh clone starts cold and the book build reuses what nbmake computed.
export SARSLIDE_DATA_DIR ?= $(CURDIR)/data
# No matplotlib backend override may reach the notebook kernels: with none, ipykernel
# selects the inline backend and every figure becomes an output on the book's pages
# (MPLBACKEND=Agg once hid them all). The package tests select Agg themselves, inside the
# pytest run only (tests/conftest.py).
unexport MPLBACKEND

.PHONY: demo test venv book pytest nbmake lint format check-site site-check lab colab-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: venv book

book: venv
	$(BIN)/jupyter-book build . --warningiserror --keep-going

pytest: venv
	$(BIN)/python -m pytest tests

# Chapter 7's web map is built without basemap tiles here (no network in CI); the book
# build keeps them, so a reader of the published site pans and zooms over a basemap.
nbmake: venv
	SARSLIDE_WEBMAP_TILES=none $(BIN)/python -m pytest --nbmake --nbmake-timeout=1800 -p no:cacheprovider --durations=0 notebooks

# One style for the package, its tests, tools, benchmarks and the notebooks' code as the
# book shows it: ruff-formatted, ruff-linted (rules in pyproject.toml [tool.ruff.lint]),
# no line over 88 characters (docstrings, comments and URLs included).
CODE := sarslide tests tools benchmarks notebooks
lint: venv
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/ruff check $(CODE)
	$(BIN)/python tools/check_line_length.py $(CODE)

# Format the code in place (ruff format and ruff's safe fixes, e.g. import order), then
# list the lines still over 88 characters (long strings and comments: shorten by hand).
format: venv
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)
	-$(BIN)/python tools/check_line_length.py $(CODE)

# Every chapter page of the built book shows its figures, each a real, non-blank image.
check-site: venv
	$(BIN)/python tools/check_site.py $(BUILD)

test: lint pytest nbmake book check-site

# Optional: open every chapter page in headless Chromium, one screenshot each under
# _build/screenshots/. Needs Debian's chromium (apt-get install chromium); says so if absent.
site-check: book check-site
	$(BIN)/python tools/screenshot_site.py $(BUILD)

# JupyterLab on the notebooks, with the package installed (editable) and the data cache set.
LAB_ARGS ?=
lab: venv
	@echo "SARSLIDE_PROFILE=$(SARSLIDE_PROFILE) SARSLIDE_DATA_DIR=$(SARSLIDE_DATA_DIR)"
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# Not part of `make test`: build the wheel, install it into a clean virtual environment
# without the development extras (as a chapter's first cell does on Colab), then execute
# chapter 2 there on the demo profile with a cold data cache. Prints the time of each step.
colab-check: venv
	$(BIN)/python tools/colab_check.py --python $(PYTHON) --work $(BUILD)/colab-check

clean:
	rm -rf $(BUILD)
