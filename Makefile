# The commands of the README:
#   make reproduce [SCALE=smoke|reduced|full] [ONLY="01 02"] [JOBS=2]   regenerate figures and tables
#   make test                                                   run the test suite
#   make lab                                                    JupyterLab on notebooks/
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= reduced
ONLY ?=
JOBS ?=

.PHONY: setup reproduce test lab notebooks-sync

setup:
	@VENV=$(VENV) bash scripts/setup.sh

reproduce: setup
	$(PY) -m deim reproduce --scale $(SCALE) $(if $(ONLY),--only $(ONLY),) $(if $(JOBS),--jobs $(JOBS),)

# pytest exits with 5 when it collects no test; that is not a failure of the suite.
test: setup
	@$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# installs the notebooks extra (jupyterlab, ...) on top of the default set-up, then starts JupyterLab
lab:
	@VENV=$(VENV) EXTRAS=dev,tensorboard,notebooks bash scripts/setup.sh
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

notebooks-sync:
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.py
