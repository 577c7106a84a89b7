# sarslide — two commands on a fresh machine (see README):
#   make demo   create .venv, install, execute every notebook on the demo profile, build the book
#   make test   create .venv if missing, run the package tests, the notebooks under nbmake, a book build
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export SARSLIDE_PROFILE ?= demo
# Cubes, chips, checkpoints and results of the notebooks live inside the checkout (ignored
# by git), so a fresh clone starts cold and the book build reuses what nbmake computed.
export SARSLIDE_DATA_DIR ?= $(CURDIR)/data
# Keep matplotlib and caches off the user's display / home-independent in CI.
export MPLBACKEND ?= Agg

.PHONY: demo test venv book pytest nbmake clean

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

nbmake: venv
	$(BIN)/python -m pytest --nbmake --nbmake-timeout=900 -p no:cacheprovider notebooks

test: pytest nbmake book

clean:
	rm -rf _build
