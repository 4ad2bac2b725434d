#!/usr/bin/env bash
# Quick start: install, then analyse an image with the built-in tiny demo model.
# The demo model has random weights: its answers are noise, but every step is real.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ "$#" -eq 0 ]; then
  img=$(python -m ffaa.demo_image)
  set -- "$img"
fi
exec ffaa analyze --demo "$@"
