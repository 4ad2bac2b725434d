#!/usr/bin/env bash
# Create .venv and install ffaa with everything its tests need (CPU torch first, pinned, so that
# no dependency pulls a multi-GB CUDA build). Safe to run again: when pyproject.toml has not
# changed since the last successful install, it installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.ffaa-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && python -c "import ffaa" 2>/dev/null; then
  exit 0
fi
# pip's notes about index locations this machine's pip configuration names but lacks are dropped;
# everything else pip says is kept.
quiet() { "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }
echo "installing ffaa and its dependencies into .venv (a few minutes the first time)..." >&2
quiet python -m pip install -q --upgrade pip
quiet python -m pip install -q torch==2.13.0
# setuptools' note that an editable install maps folders to other package names is what this
# layout means to do (mids/ -> ffaa.mids): silenced by its message, other warnings stay.
PYTHONWARNINGS="ignore:Editable installation" quiet python -m pip install -q -e ".[dev]"
echo "$want" > "$stamp"
