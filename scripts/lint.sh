#!/usr/bin/env bash
# Lint (ruff, the rule set in pyproject.toml) and type-check the typed core (mypy, the files
# listed in pyproject.toml). Run after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
ruff check ffaa mids eval tests app.py scripts
mypy
