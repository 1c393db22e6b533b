#!/usr/bin/env bash
# Set up and run lint + the whole test suite (pcscd with a virtual reader is started by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
exec .venv/bin/pytest -q "$@"
