#!/usr/bin/env bash
# Set up and run a simulated classroom (simulated devices, real journal, real JPEG bundles, embedded defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/capturekit simulate --students "${STUDENTS:-60}" "$@"
