#!/usr/bin/env bash
# Set up capturekit on Debian 12 / Raspberry Pi OS Bookworm: apt packages, a venv in .venv, pip install.
#   scripts/setup.sh          the kit's run-time needs
#   scripts/setup.sh --test   plus what the tests need (pcscd + the vpcd virtual reader, pytest, ruff)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(python3-venv python3-dev gcc swig libpcsclite-dev pcscd)
extra=()
if [[ "${1:-}" == "--test" ]]; then
  apt_pkgs+=(vsmartcard-vpcd pcsc-tools)
  extra=(".[test]")
else
  extra=(".")
fi

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "installing apt packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# On a Pi, picamera2 comes from apt (python3-picamera2) and the venv must see it.
venv_opts=()
if dpkg-query -W -f='${Status}' python3-picamera2 2>/dev/null | grep -q "install ok installed"; then
  venv_opts+=(--system-site-packages)
fi
[[ -x .venv/bin/python ]] || python3 -m venv "${venv_opts[@]}" .venv
.venv/bin/pip install -q --disable-pip-version-check -e "${extra[@]}"
# The face models for QC ship inside mediapipe 0.10.18's wheel; its declared dependencies (jax,
# opencv-contrib, numpy 2-era pins) are not needed and would break numpy<2: install it alone.
.venv/bin/pip install -q --disable-pip-version-check --no-deps "mediapipe==0.10.18"
