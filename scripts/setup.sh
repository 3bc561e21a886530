#!/usr/bin/env bash
# Set up a fresh machine for deim: a virtual environment with deim and its dependencies
# (torch 2.14.1 / torchvision 0.29.1 pinned), a Jupyter kernel, and the built-in data's source
# (the Debian package dataset-fashion-mnist) where apt-get exists.
#   VENV=path (default .venv)   PYTHON=python3.11 (default python3)
#   EXTRAS=dev,tensorboard (default; `make lab` adds notebooks, for JupyterLab)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev,tensorboard}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.deim-installed-${EXTRAS//,/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: pip install -e .[$EXTRAS] (torch 2.14.1, torchvision 0.29.1, ...)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[$EXTRAS]"
  touch "$stamp"
fi

fashion_dir=${DEIM_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ ! -d "$fashion_dir" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: apt-get install -y dataset-fashion-mnist (the built-in data's images)"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: WARNING: Fashion-MNIST not found and no apt-get here. Download the four IDX files of" \
         "the official Fashion-MNIST release into a folder and set DEIM_FASHION_MNIST to it;" \
         "the reduced-scale runs and the data tests need it." >&2
  fi
fi
