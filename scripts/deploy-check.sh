#!/usr/bin/env bash
# A real apply of ansible/site.yml: debootstrapped Debian roots (cached by scripts/roots.sh), the playbook
# run into them through ansible's community.general.chroot connection as the example inventory's kit
# gd-kit-01 and centre host centre-01, then checks inside the roots, then the playbook again: 0 changes.
#
#   scripts/deploy-check.sh [--suite bookworm|trixie] [--arch amd64|arm64] [--kit-only] [--keep]
#
# Checks: users and their groups, unit files installed and enabled (systemctl --root), `systemd-analyze
# verify` and `security --offline=true` on the installed units, kit.toml/centre.toml/secrets rendered
# with their modes, `capturekit config` and `capturekit simulate -n 5 --size 640x480 --qc sim` run by
# the installed capturekit as the kit's user, the centre's PostgreSQL database reachable by peer
# authentication as the centre's user, and the second run's recap: changed=0 on every host.
# Steps that only make sense on a Raspberry Pi (boot config, the Raspberry Pi apt repository's packages)
# are skipped by capturekit_on_pi=false and reported as skipped. arm64 roots run under qemu-user-static.
#
# Needs root and the project's venv with the test extra (ansible, ansible-lint): bash scripts/setup.sh --test.
# Runs in its own mount and UTS namespace: nothing it mounts is visible outside, the host's hostname is
# safe, and every mount is undone on exit (trap) even if the namespace were shared.
# Cache: ROOTS_CACHE (default /var/cache/capturekit-roots): root tarballs, apt and pip download caches.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

suite=bookworm arch=$(dpkg --print-architecture) centre=1 keep=0
while (($#)); do
  case $1 in
    --suite) suite=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --kit-only) centre=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "deploy-check: unknown argument $1" >&2; exit 2 ;;
  esac
done

[[ $(id -u) -eq 0 ]] || { echo "deploy-check: must run as root (debootstrap, chroot, mounts)" >&2; exit 1; }
venv=$repo/.venv
[[ -x $venv/bin/ansible-playbook ]] \
  || { echo "deploy-check: no ansible in $venv (bash scripts/setup.sh --test)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "deploy-check: needs systemd-analyze (apt install systemd)" >&2; exit 1; }

# A private mount + UTS namespace for everything below.
if [[ -z ${DEPLOY_CHECK_NS:-} ]]; then
  export DEPLOY_CHECK_NS=1
  again=(--suite "$suite" --arch "$arch")
  ((centre)) || again+=(--kit-only)
  ((keep)) && again+=(--keep)
  exec unshare --mount --uts --propagation private -- "$0" "${again[@]}"
fi

# shellcheck source=scripts/roots.sh
source "$repo/scripts/roots.sh"

work=/var/tmp/capturekit-roots/deploy-check-$suite-$arch
kit_root=$work/kit
centre_root=$work/centre
logs=$work/logs
hosts=(gd-kit-01)
((centre)) && hosts+=(centre-01)
roots=("$kit_root")
((centre)) && roots+=("$centre_root")

t0=$(date +%s.%N)
declare -A took
stamp() { took[$1]=$(awk -v a="$2" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'); }
say() { echo "deploy-check: $*"; }
fail() { echo "deploy-check: FAIL: $*" >&2; exit 1; }

cleanup() {
  local rc=$? r
  set +e
  for r in "${roots[@]}"; do
    [[ -d $r ]] || continue
    # the centre's PostgreSQL, started for the play (no init in a chroot)
    if [[ -x $r/usr/bin/pg_lsclusters ]] && [[ -n $(roots_mounts_under "$r") ]]; then
      # shellcheck disable=SC2016  # expanded inside the root
      chroot "$r" sh -c 'pg_lsclusters --no-header | while read -r v c _; do pg_ctlcluster "$v" "$c" stop; done' \
        >/dev/null 2>&1
    fi
    roots_umount "$r"
    ((keep)) || roots_cleanup "$r"
  done
  ((keep)) && say "roots kept in $work (scripts/roots.sh cleanup DIR)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$logs"
say "roots: $suite/$arch (cache $ROOTS_CACHE)"
ts=$(date +%s.%N)
for r in "${roots[@]}"; do
  roots_prepare "$suite" "$arch" "$r" >/dev/null
  roots_mount "$r" "$ROOTS_CACHE/apt-archives/$suite-$arch-${r##*/}:/var/cache/apt/archives" \
    "$ROOTS_CACHE/pip/$suite-$arch:/root/.cache/pip"
done
stamp prepare "$ts"

# The example inventory, with the roots as its hosts' connections. capturekit_on_pi=false: this is a
# Debian root, not a Raspberry Pi OS card.
overlay=$work/inventory-chroot.yml
{
  echo "all:"
  echo "  hosts:"
  echo "    gd-kit-01: {ansible_connection: community.general.chroot, ansible_host: '$kit_root', capturekit_on_pi: false}"
  ((centre)) && echo "    centre-01: {ansible_connection: community.general.chroot, ansible_host: '$centre_root'}"
} >"$overlay"

# One wheel for both runs: the second run must see the same code even if the working tree moves meanwhile.
wheel=$(PYTHON="$venv/bin/python" bash "$repo/ansible/build-wheel.sh" "$work/wheel")
play1() {  # play1 LOG HOST: site.yml for one host (the kit and the centre run side by side)
  local log=$1 host=$2
  (cd "$repo/ansible" && env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM=dumb ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks ANSIBLE_FORCE_COLOR=0 \
    ANSIBLE_NOCOLOR=1 ANSIBLE_CONFIG="$repo/ansible/ansible.cfg" PYTHON="$venv/bin/python" \
    nice -n "$ROOTS_NICE" "$venv/bin/ansible-playbook" \
    -i inventory/example -i "$overlay" --vault-password-file inventory/example/vault-password.txt \
    -e "capturekit_wheel=$wheel" --limit "localhost,$host" site.yml) >"$log" 2>&1
}
play() {  # play RUN: every host at once; fails if any did
  local run=$1 h pids=() rc=0
  for h in "${hosts[@]}"; do
    play1 "$logs/apply-$run-$h.log" "$h" &
    pids+=($!)
  done
  for h in "${!pids[@]}"; do
    wait "${pids[$h]}" || { rc=1; tail -n 40 "$logs/apply-$run-${hosts[$h]}.log" >&2; }
  done
  return $rc
}
recap() {  # host field from PLAY RECAP, e.g. recap RUN gd-kit-01 changed
  awk -v h="$2" -v f="$3" '/PLAY RECAP/ { r = 1 } r && $1 == h { for (i = 1; i <= NF; i++) if ($i ~ "^" f "=")
    { split($i, a, "="); print a[2] } }' "$logs/apply-$1-$2.log"
}

say "first apply (${hosts[*]}) …"
ts=$(date +%s.%N)
play 1 || fail "first apply failed (logs: $logs/apply-1-*.log)"
stamp apply1 "$ts"
for h in "${hosts[@]}"; do
  say "  $h: ok=$(recap 1 "$h" ok) changed=$(recap 1 "$h" changed) skipped=$(recap 1 "$h" skipped)" \
    "failed=$(recap 1 "$h" failed)"
done
grep -q "capturekit_on_pi is false" "$logs/apply-1-gd-kit-01.log" || fail "the camera role did not report itself skipped"
say "  camera role on a non-Pi: reported skipped (boot config, python3-picamera2)"

# ---- checks inside the kit root
ts=$(date +%s.%N)
in_kit() { roots_exec "$kit_root" "$@"; }
as_kit() { roots_exec "$kit_root" runuser -u capturekit -- env MPLBACKEND=Agg "$@"; }
passed=0
check() { local what=$1; shift; if "$@"; then say "  ok: $what"; passed=$((passed + 1)); else fail "$what"; fi; }
groups_of() { in_kit id -nG "$1" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//'; }
mode_of() { in_kit stat -c '%a %U:%G' "$1"; }

say "checks in the kit root"
check "capturekit in exactly capturekit video gpio dialout input" \
  test "$(groups_of capturekit)" = "capturekit dialout gpio input video"
check "crew in capturekit (control socket)" grep -qw capturekit <<<"$(groups_of crew)"
for u in capturekit.service pcscd.socket chrony.service; do
  check "$u enabled" test "$(systemctl --root="$kit_root" is-enabled "$u")" = enabled
done
sync_state=$(systemctl --root="$kit_root" is-enabled capturekit-sync.service || true)
if in_kit /opt/capturekit/venv/bin/capturekit sync --help >/dev/null 2>&1; then
  check "capturekit-sync.service enabled (capturekit has sync)" test "$sync_state" = enabled
else
  check "capturekit-sync.service installed, left disabled (capturekit has no sync yet)" test "$sync_state" = disabled
fi
# The root's own systemd-analyze (its systemd version knows its own units; the host's may be older), then
# the host's with --root (what the issue names): both clean.
verify=$(in_kit systemd-analyze verify capturekit.service capturekit-sync.service 2>&1) \
  || fail "systemd-analyze verify in the root: $verify"
check "systemd-analyze verify ($(in_kit systemd-analyze --version | head -n1 | cut -d' ' -f1-2)) on the installed units: clean" \
  test -z "$verify"
if [[ $(in_kit systemd-analyze --version | head -n1) == "$(systemd-analyze --version | head -n1)" ]]; then
  verify=$(systemd-analyze verify --root="$kit_root" capturekit.service capturekit-sync.service 2>&1) \
    || fail "systemd-analyze verify --root: $verify"
  check "systemd-analyze verify --root=$kit_root: clean" test -z "$verify"
fi
declare -A score
for u in capturekit.service capturekit-sync.service; do
  score[$u]=$(in_kit systemd-analyze security --offline=true --no-pager "/etc/systemd/system/$u" \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  check "$u exposure ${score[$u]} <= 3.0" awk -v s="${score[$u]}" 'BEGIN { exit !(s != "" && s <= 3.0) }'
done
check "kit.toml 0640 root:capturekit" test "$(mode_of /etc/capturekit/kit.toml)" = "640 root:capturekit"
check "kit.toml names the kit and school" grep -q '^kit_id = "gd-kit-01"' "$kit_root/etc/capturekit/kit.toml"
check "kit.toml: simulated devices on a non-Pi" grep -q '^backend = "sim"' "$kit_root/etc/capturekit/kit.toml"
check "kit.toml: readers from the inventory" grep -q 'port = "/dev/idcard"' "$kit_root/etc/capturekit/kit.toml"
check "kit token 0640 root:capturekit, from the vault" test "$(mode_of /etc/capturekit/kit.token)" = "640 root:capturekit"
check "kit token is the vault's" grep -q '^ck_' "$kit_root/etc/capturekit/kit.token"
check "data dir 2770 capturekit:capturekit" test "$(mode_of /var/lib/capturekit)" = "2770 capturekit:capturekit"
check "journald capped (SystemMaxUse=50M)" grep -q '^SystemMaxUse=50M' "$kit_root/etc/systemd/journald.conf.d/capturekit.conf"
check "/tmp on tmpfs in fstab" grep -qE '^tmpfs\s+/tmp\s+tmpfs' "$kit_root/etc/fstab"
check "hostname gd-kit-01" test "$(cat "$kit_root/etc/hostname")" = gd-kit-01
check "chrony steps the clock at boot" grep -q '^makestep 1 3' "$kit_root/etc/chrony/conf.d/capturekit.conf"
check "polkit lets capturekit use pcscd" grep -q 'subject.user == "capturekit"' \
  "$kit_root/etc/polkit-1/rules.d/60-capturekit-pcscd.rules"
check "udev names SAM readers /dev/idcard" grep -q 'SYMLINK+="idcard"' "$kit_root/etc/udev/rules.d/70-capturekit-readers.rules"
cfg_out=$(as_kit /opt/capturekit/venv/bin/capturekit config 2>&1) || fail "capturekit config: $cfg_out"
check "capturekit config as capturekit: $cfg_out" grep -q "configuration OK: kit gd-kit-01" <<<"$cfg_out"
if crew_out=$(in_kit runuser -u crew -- /usr/local/bin/capturekit config 2>&1); then
  check "the crew's \`capturekit config\` runs as capturekit (sudoers + wrapper)" grep -q "configuration OK" <<<"$crew_out"
elif [[ -n $(roots_qemu_name "$arch") ]] && grep -q "effective uid is not 0" <<<"$crew_out"; then
  # binfmt_misc runs foreign binaries through qemu without its C flag: a setuid sudo does not get root
  check "sudoers for the crew parse (visudo; sudo itself cannot go setuid under qemu-user here)" \
    in_kit visudo -cf /etc/sudoers.d/capturekit-crew
else
  fail "crew's capturekit: $crew_out"
fi
tsim=$(date +%s.%N)
sim_out=$(as_kit /opt/capturekit/venv/bin/capturekit simulate -n 5 --size 640x480 --qc sim \
  --data-dir /var/lib/capturekit/deploy-check-sim 2>&1) || fail "capturekit simulate: $sim_out"
stamp simulate "$tsim"
in_kit rm -rf /var/lib/capturekit/deploy-check-sim
say "  ok: capturekit simulate -n 5 as capturekit (${took[simulate]} s): $(grep -v -E '^[0-9]{4}-' <<<"$sim_out" | tr '\n' ' ' | tr -s ' ' | cut -c1-200)"
versions=$(in_kit /opt/capturekit/venv/bin/python -c 'import sys, numpy, cv2
print(f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, opencv {cv2.__version__}")')
say "  the kit's venv: $versions; QC $(sed -n '/^\[qc\]/,/^\[/s/^enabled = //p' "$kit_root/etc/capturekit/kit.toml")"
if [[ -e $kit_root/usr/share/polkit-1/actions/org.debian.pcsc-lite.policy ]]; then
  say "  pcscd asks polkit ($suite): the rule for capturekit is what lets the daemon in"
else
  say "  pcscd without polkit ($suite): the rule is inert"
fi

# ---- checks inside the centre root
if ((centre)); then
  in_c() { roots_exec "$centre_root" "$@"; }
  cmode() { in_c stat -c '%a %U:%G' "$1"; }
  say "checks in the centre root"
  check "capturekit-centre user" in_c id capturekit-centre
  check "centre.toml 0640 root:capturekit-centre" test "$(cmode /etc/capturekit/centre.toml)" = "640 root:capturekit-centre"
  check "centre.toml: PostgreSQL over the Unix socket" \
    grep -q 'postgresql+psycopg://capturekit-centre@/capturekit?host=/run/postgresql' "$centre_root/etc/capturekit/centre.toml"
  check "centre.toml: object store" grep -q '^storage_url = "s3://' "$centre_root/etc/capturekit/centre.toml"
  check "centre.env 0600 root:root with the S3 keys" test "$(cmode /etc/capturekit/centre.env)" = "600 root:root"
  check "centre.env holds the vault's S3 key" grep -q '^AWS_ACCESS_KEY_ID=EXAMPLEACCESSKEY' "$centre_root/etc/capturekit/centre.env"
  keyfile=$(find "$centre_root/etc/capturekit/centre-keys" -name "*.key" -printf "%f\n" | head -n1)
  check "private sealing key $keyfile 0600 capturekit-centre" \
    test "$(cmode "/etc/capturekit/centre-keys/$keyfile")" = "600 capturekit-centre:capturekit-centre"
  check "keys dir 0700" test "$(cmode /etc/capturekit/centre-keys)" = "700 capturekit-centre:capturekit-centre"
  if grep -q '^\[sealing\]' "$kit_root/etc/capturekit/kit.toml"; then
    check "the kit seals to the public key the centre holds" grep -qF \
      "\"$(tr -d '\n' <"$centre_root/etc/capturekit/centre-keys/${keyfile%.key}.pub")\"" "$kit_root/etc/capturekit/kit.toml"
  else
    say "  skipped: kit.toml has no [sealing] (this capturekit has no such table yet)"
  fi
  state=$(systemctl --root="$centre_root" is-enabled capturekit-centre.service || true)
  if in_c /opt/capturekit/venv/bin/capturekit centre serve --help >/dev/null 2>&1; then
    check "capturekit-centre.service enabled (capturekit has centre serve)" test "$state" = enabled
  else
    check "capturekit-centre.service installed, left disabled (no centre serve yet)" test "$state" = disabled
  fi
  check "postgresql enabled" test "$(systemctl --root="$centre_root" is-enabled postgresql.service)" = enabled
  verify=$(in_c systemd-analyze verify capturekit-centre.service 2>&1) || fail "verify: $verify"
  check "systemd-analyze verify capturekit-centre.service in the root: clean" test -z "$verify"
  score[capturekit-centre.service]=$(in_c systemd-analyze security --offline=true --no-pager \
    /etc/systemd/system/capturekit-centre.service | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  check "capturekit-centre.service exposure ${score[capturekit-centre.service]} <= 3.0" \
    awk -v s="${score[capturekit-centre.service]}" 'BEGIN { exit !(s != "" && s <= 3.0) }'
  db=$(in_c runuser -u capturekit-centre -- psql -h /run/postgresql -d capturekit -tAc \
    "select current_user || ' ' || (select pg_get_userbyid(datdba) from pg_database where datname = 'capturekit')" 2>&1) \
    || fail "psql as capturekit-centre: $db"
  check "PostgreSQL: peer auth as capturekit-centre, owner of database capturekit ($db)" \
    test "$db" = "capturekit-centre capturekit-centre"
  if in_c /opt/capturekit/venv/bin/python -c 'import sqlalchemy, psycopg' 2>/dev/null; then
    # The example's S3 endpoint does not exist: the same configuration with a directory for the objects.
    sed 's|^storage_url = .*|storage_url = ""|' "$centre_root/etc/capturekit/centre.toml" >"$centre_root/tmp/centre-db.toml"
    chmod 644 "$centre_root/tmp/centre-db.toml"
    mig=$(in_c runuser -u capturekit-centre -- env CAPTUREKIT_CENTRE_CONFIG=/tmp/centre-db.toml \
      /opt/capturekit/venv/bin/capturekit centre migrate 2>&1) || fail "capturekit centre migrate: $mig"
    check "capturekit centre migrate as capturekit-centre on PostgreSQL (objects in a directory: the example's S3\
 endpoint does not exist): $(tail -n1 <<<"$mig")" true
  else
    say "  skipped: centre migrate (the wheel declares no [centre] requirements yet: sqlalchemy, psycopg)"
  fi
fi
stamp checks "$ts"

say "second apply …"
ts=$(date +%s.%N)
play 2 || fail "second apply failed (logs: $logs/apply-2-*.log)"
stamp apply2 "$ts"
for h in "${hosts[@]}"; do
  for who in localhost "$h"; do
    c=$(recap 2 "$h" changed)
    [[ $who == localhost ]] && c=$(awk '/PLAY RECAP/ { r = 1 } r && $1 == "localhost" { sub("changed=", "", $4); print $4 }' \
      "$logs/apply-2-$h.log")
    if [[ $c != 0 ]]; then
      grep -B2 -A8 -E '^changed:' "$logs/apply-2-$h.log" | head -n 60 >&2
      fail "second apply changed $c task(s) on $who (log: $logs/apply-2-$h.log)"
    fi
  done
  say "  ok: $h changed=0 (ok=$(recap 2 "$h" ok), skipped=$(recap 2 "$h" skipped)), localhost changed=0"
  passed=$((passed + 1))
done

stamp total "$t0"
scores=$(for u in "${!score[@]}"; do printf '%s %s, ' "$u" "${score[$u]}"; done)
say "PASS $suite/$arch: prepare ${took[prepare]} s, first apply ${took[apply1]} s, checks ${took[checks]} s" \
  "(simulate ${took[simulate]} s), second apply ${took[apply2]} s (changed=0), total ${took[total]} s"
say "installed units' exposure: ${scores%, }"
echo "deploy-check: $passed passed, 0 failed"
