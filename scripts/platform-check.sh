#!/usr/bin/env bash
# Does the kit install and run on Raspberry Pi OS's Debian bases on aarch64? (docs/platform-check.md)
#   scripts/platform-check.sh [bookworm|trixie|all] [--keep]        (default: all)
# For each suite: a cached Debian arm64 root (scripts/roots.sh, run under qemu-user-static), the working tree
# copied in (uncommitted changes included), apt's python3-numpy + python3-pil standing in for python3-picamera2,
# `CAPTUREKIT_SYSTEM_PACKAGES=1 bash scripts/setup.sh` as on a kit, then: the venv's numpy must be apt's,
# `capturekit config`, `capturekit simulate -n 20 --size 1014x760` with the real QC, and, if
# scripts/qc_verdicts.py exists, the QC verdicts on the evaluation set must equal this host's.
#   --keep   keep the working roots (unmounted) to look into: scripts/roots.sh enter DIR; scripts/roots.sh cleanup DIR,
#            and the tree snapshot: PLATFORM_CHECK_TREE=DIR re-checks exactly that tree (e.g. on amd64)
# Settings: PLATFORM_CHECK_ARCH (default arm64; amd64 runs natively), PLATFORM_CHECK_WORK (working roots,
# default /var/tmp/capturekit-roots), PLATFORM_CHECK_LOGS (default /var/tmp/capturekit-platform-check),
# PLATFORM_CHECK_STANDIN (the apt packages standing in for python3-picamera2), PLATFORM_CHECK_DUMMY_PICAMERA2=1
# (also an empty python3-picamera2 package depending on them), PLATFORM_CHECK_PIP_CACHE=0 (no pip cache: pyscard
# and evdev are built from source again), PLATFORM_CHECK_ONLY_BINARY (packages pip may not build from source,
# default numpy and opencv), ROOTS_* (scripts/roots.sh).
# Slow under qemu: not for CI. Needs root. Exits non-zero if any suite fails.
# shellcheck disable=SC2317  # (file-wide) the step functions are called through `step NAME FUNCTION`
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=scripts/roots.sh
source "$here/roots.sh"

ARCH=${PLATFORM_CHECK_ARCH:-arm64}
WORK=${PLATFORM_CHECK_WORK:-/var/tmp/capturekit-roots}
LOGS=${PLATFORM_CHECK_LOGS:-/var/tmp/capturekit-platform-check}
STANDIN=${PLATFORM_CHECK_STANDIN:-python3-numpy python3-pil}
KIT=/opt/capturekit                        # where the tree goes inside the root
HOST_PY=$repo/.venv/bin/python             # the host's QC verdicts are the reference
SETUP_TIMEOUT=${PLATFORM_CHECK_SETUP_TIMEOUT:-90m}
RUN_TIMEOUT=${PLATFORM_CHECK_RUN_TIMEOUT:-45m}
ONLY_BINARY=${PLATFORM_CHECK_ONLY_BINARY:-numpy,opencv-python-headless,opencv-python,opencv-contrib-python}

die() { echo "platform-check: error: $*" >&2; exit 1; }
usage() { sed -n '2,/^# shellcheck/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# ---- step bookkeeping (per suite; run_suite runs in a subshell, so these globals are its own) -------------
suite="" root="" kit_root="" results="" notefile="" mounted=0 t0=0 stamp="" keep=0 step_pid="" tree="" tree_summary=""
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(printf '%s' "${4:-}" | tr '\t\n' '  ')" >>"$results"; }
setnote() { printf '%s' "$*" >"$notefile"; }
# step NAME CMD...: run CMD in a subshell with set -e in force (bash drops it inside a function called from an
# if or ||), time it, record ok/FAIL with the note CMD left through setnote, return CMD's status.
step() {
  local name=$1 note rc; shift
  echo; echo "=== [$suite/$ARCH] $name"
  t0=$SECONDS; : >"$notefile"
  # In the background and waited for, so that the suite's INT/TERM trap runs at once.
  set +e; (set -e; "$@") <&0 & step_pid=$!; wait "$step_pid"; rc=$?; step_pid=""; set -e
  note=$(cat "$notefile")
  if ((rc == 0)); then record "$name" ok $((SECONDS - t0)) "$note"
  else note=${note:-exit $rc}; record "$name" FAIL $((SECONDS - t0)) "$note"; fi
  echo "--- [$suite/$ARCH] $name: $( ((rc == 0)) && echo ok || echo "FAIL: $note") ($(fmt_time $((SECONDS - t0))))"
  return "$rc"
}
skip() { record "$1" SKIP 0 "$2"; echo; echo "=== [$suite/$ARCH] $1: skipped ($2)"; }
in_root() { roots_exec "$root" "$@"; }
in_kit() { roots_exec "$root" /bin/bash -c "cd $KIT && $1"; }
last_line() { grep -Ev '^[[:space:]]*$' "$1" | tail -n1 | cut -c1-300; }

# ---- the steps ----------------------------------------------------------------------------------------------
cache_step() {
  local tarball
  tarball=$(roots_build "$suite" "$ARCH")
  if [[ $(stat -c %Y "$tarball") -lt $(($(date +%s) - SECONDS + t0)) ]]; then   # older than this step: reused
    setnote "cached $(du -h "$tarball" | cut -f1), built $(sed -n 's/^built=//p' "${tarball%.tar.zst}.meta")"
  else
    setnote "debootstrap + updates, $(du -h "$tarball" | cut -f1)"
  fi
}

prepare_step() {
  roots_prepare "$suite" "$ARCH" "$root" >/dev/null
  setnote "$root, $(du -sh "$root" | cut -f1)"
}

# The working tree as it is, once per run so that every suite (and the host's verdicts) sees the same files:
# tracked and untracked-but-not-ignored files that exist, uncommitted changes included. Prints a summary.
snapshot_tree() {
  local dest=$1 list f
  list=$(mktemp)
  git -C "$repo" ls-files -z --cached --others --exclude-standard >"$list.all"
  while IFS= read -r -d '' f; do
    if [[ -e $repo/$f || -L $repo/$f ]]; then printf '%s\0' "$f"; fi   # not the deleted ones
  done <"$list.all" | sort -zu >"$list"
  mkdir -p "$dest"
  tar -C "$repo" --null -T "$list" -cf - | tar -C "$dest" -xf -
  echo "$(tr -cd '\0' <"$list" | wc -c) files of $(git -C "$repo" rev-parse --short HEAD) with" \
    "$(git -C "$repo" status --porcelain | wc -l) uncommitted change(s), content sha256" \
    "$(tar -C "$dest" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | sha256sum | cut -c1-12)"
  rm -f "$list" "$list.all"
}
copy_tree() {
  mkdir -p "$kit_root"
  cp -a "$tree/." "$kit_root/"
  setnote "$tree_summary -> $KIT"
}

# What python3-picamera2 pulls in from apt (it is in the Raspberry Pi repository, not Debian's). With
# PLATFORM_CHECK_DUMMY_PICAMERA2=1 also an empty package of that name depending on them, as `apt install
# python3-picamera2` would leave it for a setup.sh that looks for the package.
apt_standin() {
  local pkgs=() deb
  read -ra pkgs <<<"$STANDIN"
  in_root apt-get update -qq || { setnote "apt-get update failed"; return 1; }
  # python3-simplejpeg is the numpy-ABI-bound module picamera2 imports: take it where Debian has it.
  if in_root sh -c 'apt-cache show python3-simplejpeg >/dev/null 2>&1'; then pkgs+=(python3-simplejpeg); fi
  in_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null \
    || { setnote "apt-get install ${pkgs[*]} failed"; return 1; }
  if [[ ${PLATFORM_CHECK_DUMMY_PICAMERA2:-0} == 1 ]]; then
    deb=$(mktemp -d)
    mkdir -p "$deb/pkg/DEBIAN"
    printf 'Package: python3-picamera2\nVersion: 0~platformcheck\nArchitecture: all\nMaintainer: capturekit\nDepends: %s\nDescription: stand-in for the Raspberry Pi repository package (platform check)\n' \
      "$(printf '%s, ' "${pkgs[@]}" | sed 's/, $//')" >"$deb/pkg/DEBIAN/control"
    dpkg-deb -Zgzip --build "$deb/pkg" "$root/tmp/python3-picamera2-dummy.deb" >/dev/null
    rm -rf "$deb"
    in_root apt-get install -y -qq /tmp/python3-picamera2-dummy.deb >/dev/null \
      || { setnote "installing the dummy python3-picamera2 failed"; return 1; }
    pkgs+=(python3-picamera2)
  fi
  # shellcheck disable=SC2016  # a dpkg-query format
  setnote "$(in_root dpkg-query -W -f='${Package} ${Version}, ' "${pkgs[@]}" | sed 's/, $//')"
}

# setup.sh as on a kit; the note splits its time into apt-get install (from the root's apt history) and the rest.
setup_step() {
  local r=0 apt_s n out=$LOGS/$stamp-$suite-$ARCH-setup.txt hist0
  # PIP_ONLY_BINARY: if pip wants numpy or opencv it has already failed the numpy check; a source build of
  # either would take hours under qemu, so it fails at once with pip's "no matching distribution" instead.
  local ROOTS_ENV=(CAPTUREKIT_SYSTEM_PACKAGES=1 "PIP_ONLY_BINARY=$ONLY_BINARY") ROOTS_TIMEOUT=$SETUP_TIMEOUT
  hist0=$(grep -c '^Start-Date' "$root/var/log/apt/history.log" 2>/dev/null || true)
  in_kit 'bash scripts/setup.sh' 2>&1 | tee "$out" || r=$?
  apt_s=$(python3 - "$root/var/log/apt/history.log" "${hist0:-0}" <<'EOF'
import sys, datetime as dt
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
stamps = {"Start-Date": [], "End-Date": []}
for line in lines:
    key, _, value = line.partition(": ")
    if key in stamps:
        stamps[key].append(dt.datetime.strptime(" ".join(value.split()), "%Y-%m-%d %H:%M:%S"))
n = int(sys.argv[2] or 0)
print(int(sum((e - s).total_seconds() for s, e in zip(stamps["Start-Date"][n:], stamps["End-Date"][n:]))))
EOF
  )
  n="apt-get install $(fmt_time "$apt_s"), the rest (apt-get update, venv, pip) $(fmt_time $((SECONDS - t0 - apt_s)))"
  ((r == 0)) || n="exit $r: $(last_line "$out"); $n"
  setnote "$n"
  return "$r"
}

# The point of it all: the venv sees apt's numpy, and nothing from pip shadows it.
numpy_check() {
  local out r=0
  cat >"$root/tmp/numpy_is_apts.py" <<'EOF'
import glob, os, re, subprocess, sys, sysconfig
problems = []
cfg = open(os.path.join(sys.prefix, "pyvenv.cfg")).read()
ssp = re.search(r"include-system-site-packages\s*=\s*true", cfg) is not None
deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-numpy"], capture_output=True, text=True).stdout
upstream = re.split(r"[+~]", re.sub(r"^\d+:", "", deb).rsplit("-", 1)[0])[0] if deb else ""
own = sorted(os.path.basename(p) for p in glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "numpy*")))
print(f"python {sys.version.split()[0]}; venv include-system-site-packages = {str(ssp).lower()}")
print(f"apt python3-numpy: {deb or 'not installed'}")
print(f"numpy in the venv's own site-packages: {', '.join(own) or 'none'}")
if not ssp:
    problems.append("venv made without --system-site-packages (apt's numpy and picamera2 invisible)")
if not deb:
    problems.append("python3-numpy is not installed from apt")
try:
    import numpy
except Exception as e:
    problems.append(f"import numpy failed: {e!r}")
else:
    print(f"venv imports numpy {numpy.__version__} from {os.path.dirname(numpy.__file__)}")
    if not numpy.__file__.startswith("/usr/lib/python3/dist-packages/"):
        problems.append(f"venv's numpy is pip's {numpy.__version__}, not apt's {upstream or '(none)'}")
    if upstream and numpy.__version__.split(".")[0] != upstream.split(".")[0]:
        problems.append(f"numpy major {numpy.__version__} != apt's {upstream}: apt's picamera2/simplejpeg would "
                        "fail to import")
    elif upstream and numpy.__version__ != upstream:
        problems.append(f"numpy {numpy.__version__} != apt's {upstream}")
if own:
    problems.append(f"pip put numpy into the venv ({', '.join(own)})")
for mod in ("simplejpeg", "cv2", "PIL"):   # compiled modules that must load against this numpy
    try:
        m = __import__(mod)
        print(f"import {mod}: {getattr(m, '__version__', '?')} from {os.path.dirname(m.__file__)}")
    except ModuleNotFoundError as e:
        if mod != "simplejpeg":
            problems.append(f"import {mod} failed: {e}")
    except Exception as e:
        problems.append(f"import {mod} failed: {e!r}")
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
EOF
  out=$(in_kit '.venv/bin/python /tmp/numpy_is_apts.py' 2>&1) || r=$?
  echo "$out"
  if ((r != 0)); then
    setnote "$(grep '^PROBLEM:' <<<"$out" | sed 's/^PROBLEM: //' | paste -sd ';' - | sed 's/;/; /g' | cut -c1-500)"
  else
    setnote "$(grep '^venv imports numpy' <<<"$out")"
  fi
  return "$r"
}

config_step() {
  local out=$LOGS/$stamp-$suite-$ARCH-config.txt r=0
  ROOTS_TIMEOUT=$RUN_TIMEOUT in_kit '.venv/bin/capturekit config' 2>&1 | tee "$out" || r=$?
  ((r == 0)) || setnote "exit $r: $(last_line "$out")"
  return "$r"
}

simulate_step() {
  local out=$LOGS/$stamp-$suite-$ARCH-simulate.txt r=0
  ROOTS_TIMEOUT=$RUN_TIMEOUT in_kit '.venv/bin/capturekit simulate -n 20 --size 1014x760' 2>&1 | tee "$out" || r=$?
  if ((r != 0)); then setnote "exit $r: $(last_line "$out")"; return "$r"; fi
  grep -q "journal matches the script" "$out" || { setnote "no 'journal matches the script' in its output"; return 1; }
  setnote "journal matches the script"
}

vroot="" vhost=""
verdicts_root() {
  local out=$LOGS/$stamp-$suite-$ARCH-verdicts.txt r=0
  rm -f "$root/tmp/qc-verdicts.json"
  ROOTS_TIMEOUT=$RUN_TIMEOUT in_kit '.venv/bin/python scripts/qc_verdicts.py /tmp/qc-verdicts.json' 2>&1 \
    | tee "$out" || r=$?
  ((r == 0)) || { setnote "exit $r: $(last_line "$out")"; return "$r"; }
  cp "$root/tmp/qc-verdicts.json" "$vroot"
}
verdicts_host() {
  [[ -x $HOST_PY ]] || { setnote "no host venv $HOST_PY (run bash scripts/setup.sh)"; return 1; }
  # The same snapshot as in the root, with the host's venv (its editable install points at the live tree).
  (cd "$tree" && PYTHONPATH=$tree nice -n "$ROOTS_NICE" "$HOST_PY" scripts/qc_verdicts.py "$vhost.tmp")
  mv "$vhost.tmp" "$vhost"
}
verdicts_diff() {
  local out r=0
  out=$(python3 - "$vhost" "$vroot" "$ARCH" <<'EOF'
import json, sys
host, other = (json.load(open(p)) for p in sys.argv[1:3])
arch = sys.argv[3]
def norm(v):
    return None if v is None else (v.get("verdict"), sorted(v.get("reasons") or []))
diffs = [f for f in sorted(set(host) | set(other)) if norm(host.get(f)) != norm(other.get(f))]
for f in diffs:
    print(f"  {f}: host {norm(host.get(f))}  {arch} {norm(other.get(f))}")
print(f"{len(host)} frames on the host, {len(other)} on {arch}: {len(diffs)} differ"
      + (f" ({', '.join(diffs[:8])}{', ...' if len(diffs) > 8 else ''})" if diffs else ""))
sys.exit(1 if diffs else 0)
EOF
  ) || r=$?
  echo "$out"
  setnote "$(tail -n1 <<<"$out")"
  return "$r"
}

# ---- one suite -----------------------------------------------------------------------------------------------
finish_suite() {
  if [[ -n $step_pid ]]; then kill -TERM "$step_pid" 2>/dev/null || true; fi   # stop the step's own shell first
  if ((mounted)); then roots_umount "$root"; mounted=0; fi
  if ((keep)); then
    [[ -d $root ]] && echo "kept $root: scripts/roots.sh enter $root; scripts/roots.sh cleanup $root"
  elif [[ -d $root ]]; then
    roots_cleanup "$root"
  fi
}

run_suite() {
  suite=$1 results=$2
  root=$WORK/platform-check-$suite-$ARCH kit_root=$WORK/platform-check-$suite-$ARCH$KIT notefile=$2.note
  local binds=() py_ok=0 ck_ok=0
  trap finish_suite EXIT
  trap 'exit 130' INT TERM

  step "root: debootstrap or cache" cache_step || return 1
  step "root: restore working copy" prepare_step || return 1
  step "copy working tree" copy_tree || return 1
  mkdir -p "$ROOTS_CACHE/apt-archives/$suite-$ARCH/partial"
  binds=("$ROOTS_CACHE/apt-archives/$suite-$ARCH:/var/cache/apt/archives")
  [[ ${PLATFORM_CHECK_PIP_CACHE:-1} == 0 ]] || binds+=("$ROOTS_CACHE/pip/$suite-$ARCH:/root/.cache/pip")
  roots_mount "$root" "${binds[@]}" || { record "mount /proc /sys /dev /run" FAIL 0 "see the log"; return 1; }
  mounted=1
  # shellcheck disable=SC2016  # expanded inside the root
  echo "root $root: $(in_root sh -c '. /etc/os-release; echo "$PRETTY_NAME, $(uname -m), $(python3 -V)"')"

  step "apt: picamera2 stand-in" apt_standin || true
  step "setup.sh (CAPTUREKIT_SYSTEM_PACKAGES=1)" setup_step || true
  [[ -x $kit_root/.venv/bin/python ]] && py_ok=1
  [[ -x $kit_root/.venv/bin/capturekit ]] && ck_ok=1

  if ((py_ok)); then step "venv numpy is apt's numpy" numpy_check || true
  else skip "venv numpy is apt's numpy" "no .venv/bin/python"; fi

  if ((ck_ok)); then
    step "capturekit config" config_step || true
    step "capturekit simulate -n 20 --size 1014x760" simulate_step || true
  else
    skip "capturekit config" "no .venv/bin/capturekit"
    skip "capturekit simulate -n 20 --size 1014x760" "no .venv/bin/capturekit"
  fi

  if [[ ! -f $kit_root/scripts/qc_verdicts.py ]]; then
    skip "QC verdicts: $ARCH == host" "scripts/qc_verdicts.py is not in the tree yet"
  elif ((!py_ok)); then
    skip "QC verdicts: $ARCH == host" "no .venv/bin/python"
  else
    vroot=$LOGS/$stamp-$suite-$ARCH-verdicts.json vhost=$LOGS/$stamp-host-verdicts.json
    if step "QC verdicts in the root" verdicts_root; then
      # The host's verdicts are computed once per run, by the first suite that needs them.
      if [[ -s $vhost ]] || step "QC verdicts on the host ($(uname -m))" verdicts_host; then
        step "QC verdicts: $ARCH == host" verdicts_diff || true
      fi
    fi
  fi
  ! grep -q $'\tFAIL\t' "$results"
}

# ---- main: each suite, then the summary ------------------------------------------------------------------------
main() {
  local suites=() a s res log rc suite_pid="" fail=0 total name result secs note failed
  keep=0
  for a in "$@"; do
    case $a in
      bookworm | trixie) suites+=("$a") ;;
      all) suites+=(bookworm trixie) ;;
      --keep) keep=1 ;;
      -h | --help) usage ;;
      *) die "unknown argument '$a' (bookworm, trixie, all, --keep)" ;;
    esac
  done
  ((${#suites[@]})) || suites=(bookworm trixie)
  roots_require_root
  command -v git >/dev/null || die "git is needed to list the working tree"
  roots_host_ready "$ARCH"
  mkdir -p "$LOGS" "$WORK"
  stamp=$(date +%Y%m%d-%H%M%S)
  if [[ -n ${PLATFORM_CHECK_TREE:-} ]]; then   # re-check a snapshot kept by an earlier --keep run
    tree=$(realpath -e "$PLATFORM_CHECK_TREE") || die "no such snapshot: $PLATFORM_CHECK_TREE"
    tree_summary="snapshot $tree"
  else
    tree=$LOGS/$stamp-tree
    tree_summary=$(snapshot_tree "$tree")
  fi
  echo "tree: $tree_summary"

  # A suite runs in the background (so this trap runs at once); on INT/TERM it is told to stop, and it
  # unmounts and removes its root before this exits.
  trap 'trap "" INT TERM; [[ -z $suite_pid ]] || { kill -TERM "$suite_pid" 2>/dev/null; wait "$suite_pid"; }
        ((keep)) || [[ -n ${PLATFORM_CHECK_TREE:-} ]] || rm -rf "$tree"
        echo "platform-check: interrupted; logs: $LOGS/$stamp-*" >&2; exit 130' INT TERM
  declare -A status
  for s in "${suites[@]}"; do
    res=$LOGS/$stamp-$s-$ARCH.results log=$LOGS/$stamp-$s-$ARCH.log
    : >"$res"
    echo "##### $s/$ARCH (log: $log)"
    rc=0
    # tee ignores INT/TERM so that the suite's cleanup is still shown after a Ctrl-C.
    (run_suite "$s" "$res") > >(trap '' INT TERM; exec tee -a "$log") 2>&1 <&0 &
    suite_pid=$!
    wait "$suite_pid" || rc=$?
    suite_pid=""
    status[$s]=$rc
  done
  sleep 0.2   # let tee finish the log

  echo
  echo "##### platform check, $ARCH"
  for s in "${suites[@]}"; do
    res=$LOGS/$stamp-$s-$ARCH.results total=0
    while IFS=$'\t' read -r name result secs note; do
      printf '  %-8s %-42s %-4s %7s  %s\n' "$s" "$name" "$result" "$(fmt_time "$secs")" "$note"
      total=$((total + secs))
    done <"$res"
    rm -f "$res.note"
    failed=$(awk -F'\t' '$2 == "FAIL" { print $1 }' "$res" | paste -sd ';' - | sed 's/;/; /g')
    if ((status[$s] == 0)) && [[ -z $failed ]]; then
      echo "PASS $s/$ARCH ($(fmt_time "$total"))"
    else
      echo "FAIL $s/$ARCH ($(fmt_time "$total")): ${failed:-exit ${status[$s]}}"
      fail=1
    fi
  done
  echo "tree: $tree_summary"
  if ((keep)) || [[ -n ${PLATFORM_CHECK_TREE:-} ]]; then echo "tree snapshot: $tree (PLATFORM_CHECK_TREE=$tree to re-check it)"
  else rm -rf "$tree"; fi
  echo "logs: $LOGS/$stamp-*"
  return "$fail"
}

# One line, so that bash has read all of it before running it (the file may be edited meanwhile).
main "$@"; exit $?
