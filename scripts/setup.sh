#!/usr/bin/env bash
# Set up capturekit on Debian 12/13 or Raspberry Pi OS bookworm/trixie: apt packages, a venv in .venv, pip install.
#   scripts/setup.sh          the kit and the centre (what the demo runs: a classroom syncing to a local centre)
#   scripts/setup.sh --kit    the kit alone (a Raspberry Pi in the field; ansible does the same)
#   scripts/setup.sh --test   everything plus what the tests need (pcscd + the vpcd virtual reader, PostgreSQL,
#                             pytest, ruff, moto, schemathesis, ansible)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(python3-venv python3-dev gcc swig libpcsclite-dev pcscd)
case "${1:-}" in
  # chromium: the centre's browser tests (Playwright drives Debian's browser, never one it downloads);
  # fonts-wqy-microhei: Chinese text in its screenshots
  --test) apt_pkgs+=(vsmartcard-vpcd pcsc-tools postgresql chromium fonts-wqy-microhei); extra=(".[centre,test]") ;;
  --kit) extra=(".") ;;
  "") extra=(".[centre]") ;;
  *) echo "usage: scripts/setup.sh [--kit | --test]" >&2; exit 2 ;;
esac

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

# On a Pi, picamera2 comes from apt (python3-picamera2) and the venv must see it (and its numpy);
# CAPTUREKIT_SYSTEM_PACKAGES=1 asks for the same where apt's python3-numpy stands in for it.
venv_opts=()
if [[ "${CAPTUREKIT_SYSTEM_PACKAGES:-0}" == "1" ]] \
   || dpkg-query -W -f='${Status}' python3-picamera2 2>/dev/null | grep -q "install ok installed"; then
  venv_opts+=(--system-site-packages)
fi
[[ -x .venv/bin/python ]] || python3 -m venv "${venv_opts[@]}" .venv
# numpy / opencv-python-headless pins follow the Python version (pyproject.toml): 3.11 (Bookworm) gets
# numpy 1.x + opencv <= 4.11.0.86, 3.13 (trixie) numpy 2.x + opencv 4.12+. QC's face models are in the repo.
.venv/bin/pip install -q --disable-pip-version-check -e "${extra[@]}"
