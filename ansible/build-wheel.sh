#!/usr/bin/env bash
# Build the capturekit wheel from this checkout (working tree included), reproducibly: the same source gives
# the same bytes, so ansible's copy to the kits reports "changed" only when the code changed.
#   ansible/build-wheel.sh OUT_DIR      prints the wheel's path
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:?usage: build-wheel.sh OUT_DIR}")
python=${PYTHON:-$repo/.venv/bin/python}
[[ -x $python ]] || python=python3
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
# A clean copy: no stale build/ or egg-info (setuptools would package leftovers), no venv, no runs.
tar -C "$repo" --exclude=./.git --exclude=./.venv --exclude='./build' --exclude='*.egg-info' \
  --exclude=./sim-runs --exclude=./ansible --exclude='__pycache__' --exclude='.pytest_cache' \
  --exclude='.ruff_cache' -cf - . | tar -C "$src" -xf -
export SOURCE_DATE_EPOCH=315532800   # 1980-01-01: zip timestamps independent of when it was built
mkdir -p "$out"
tmp_out=$(mktemp -d)
trap 'rm -rf "$src" "$tmp_out"' EXIT
"$python" -m pip wheel -q --no-deps --disable-pip-version-check -w "$tmp_out" "$src" >&2
wheel=$(find "$tmp_out" -name 'capturekit-*.whl' | head -n1)
[[ -n $wheel ]] || { echo "build-wheel: no wheel built" >&2; exit 1; }
name=$(basename "$wheel")
# Replace only when the bytes differ, so the file's mtime (and a later copy) stays put otherwise.
if ! cmp -s "$wheel" "$out/$name"; then
  rm -f "$out"/capturekit-*.whl
  cp "$wheel" "$out/$name"
fi
echo "$out/$name"
