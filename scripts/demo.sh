#!/usr/bin/env bash
# The whole path, on embedded defaults: set up (apt + venv + pip), then a simulated classroom on a kit syncs its
# sealed photos to a local centre, which exports the print bureau's folder; every photo is checked against the kit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py --students "${STUDENTS:-60}" "$@"
