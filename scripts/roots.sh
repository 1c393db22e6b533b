#!/usr/bin/env bash
# Cached Debian root file systems for any architecture (foreign ones run under qemu-user-static), for checks
# that install the kit into a real Debian userland: scripts/platform-check.sh, an ansible apply into a chroot.
#
#   scripts/roots.sh build SUITE ARCH [--refresh]   debootstrap SUITE/ARCH once; cached as a pristine tarball
#   scripts/roots.sh prepare SUITE ARCH DIR         a fresh working root in DIR from the cache (built if missing)
#   scripts/roots.sh enter DIR [CMD...]             mount /proc /sys /dev /run, run CMD (default: a shell), unmount
#   scripts/roots.sh mount DIR | umount DIR         the same mounts, left in place (e.g. around an ansible run)
#   scripts/roots.sh cleanup DIR                    unmount, end what still runs inside, delete DIR
#   scripts/roots.sh list                           the cache, working roots and any mounts left under them
#
# Sourced (`source scripts/roots.sh`), it only defines the roots_* functions and the ROOTS_* settings:
#   ROOTS_CACHE   cache directory (default /var/cache/capturekit-roots): <suite>-<arch>.tar.zst + .meta,
#                 apt-archives/<suite>-<arch>/ and pip/<suite>-<arch>/ (download caches bound into working roots)
#   ROOTS_MIRROR, ROOTS_SECURITY_MIRROR   Debian mirrors (default: the ones this host's apt uses)
#   ROOTS_VARIANT   debootstrap variant (default minbase)
#   ROOTS_INCLUDE   packages in the pristine root (default: what a Raspberry Pi OS Lite card has that matters
#                   here: python3, ca-certificates, git); a different list is a different cache entry
#   ROOTS_NICE    nice level for everything run in a root (default 10: the machine's cores are shared)
# Needs root. Host packages (debootstrap, qemu-user-static, binfmt-support, zstd) are installed with apt if missing.
set -euo pipefail

ROOTS_CACHE=${ROOTS_CACHE:-/var/cache/capturekit-roots}
ROOTS_VARIANT=${ROOTS_VARIANT:-minbase}
ROOTS_INCLUDE=${ROOTS_INCLUDE:-ca-certificates,python3,git}
ROOTS_NICE=${ROOTS_NICE:-10}
ROOTS_CACHE_FORMAT=1   # bump when what roots_build puts in the tarball changes

roots_die() { echo "roots: error: $*" >&2; exit 1; }
roots_log() { echo "roots: $*" >&2; }

# Debian architecture -> qemu binfmt name; empty when the host runs it natively.
roots_qemu_name() {
  local arch=$1 host
  host=$(dpkg --print-architecture)
  [[ $arch == "$host" ]] && return 0
  [[ $host == amd64 && $arch == i386 ]] && return 0
  case $arch in
    arm64) echo aarch64 ;;
    armhf | armel) echo arm ;;
    amd64) echo x86_64 ;;
    i386) echo i386 ;;
    riscv64) echo riscv64 ;;
    ppc64el) echo ppc64le ;;
    s390x) echo s390x ;;
    *) roots_die "unknown architecture '$arch'" ;;
  esac
}

roots_require_root() { [[ $(id -u) -eq 0 ]] || roots_die "must run as root (debootstrap, chroot and mounts)"; }

# Install missing host tools; make sure a foreign ARCH's binaries run (binfmt_misc + qemu-user-static, F flag).
roots_host_ready() {
  local arch=$1 qemu pkgs=(debootstrap zstd) missing=() p
  roots_require_root
  qemu=$(roots_qemu_name "$arch")
  [[ -n $qemu ]] && pkgs+=(qemu-user-static binfmt-support)
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    roots_log "installing host packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [[ -z $qemu ]] && return 0
  if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
      || roots_die "binfmt_misc is not mounted and cannot be mounted: $arch binaries cannot run here"
  fi
  if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-$qemu ]]; then
    update-binfmts --enable "qemu-$qemu" >/dev/null 2>&1 || true
  fi
  [[ -e /proc/sys/fs/binfmt_misc/qemu-$qemu ]] \
    || roots_die "no binfmt_misc entry qemu-$qemu (try: update-binfmts --enable qemu-$qemu)"
  grep -q '^enabled' "/proc/sys/fs/binfmt_misc/qemu-$qemu" \
    || roots_die "binfmt_misc entry qemu-$qemu is disabled (try: update-binfmts --enable qemu-$qemu)"
  # Without the F (fix-binary) flag the interpreter would have to be copied into every root.
  grep -q '^flags:.*F' "/proc/sys/fs/binfmt_misc/qemu-$qemu" \
    || roots_die "binfmt_misc entry qemu-$qemu lacks the F flag (use Debian's qemu-user-static + binfmt-support)"
}

# The Debian mirror this host's apt uses (one-line and deb822 sources), else deb.debian.org.
roots_host_uris() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    if [[ $f == *.sources ]]; then
      sed -n 's/^URIs:[[:space:]]*//p' "$f" | tr ' ' '\n'
    else
      sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f"
    fi
  done
}
roots_mirror() {
  if [[ -n ${ROOTS_MIRROR:-} ]]; then echo "$ROOTS_MIRROR"; return; fi
  local m
  m=$(roots_host_uris | grep -E '/debian/?$' | head -n1 || true)
  echo "${m%/}" | grep . || echo "http://deb.debian.org/debian"
}
roots_security_mirror() {
  if [[ -n ${ROOTS_SECURITY_MIRROR:-} ]]; then echo "$ROOTS_SECURITY_MIRROR"; return; fi
  local m
  m=$(roots_host_uris | grep -E '/debian-security/?$' | head -n1 || true)
  [[ -n $m ]] && { echo "${m%/}"; return; }
  m=$(roots_mirror)
  echo "${m%/debian}/debian-security"
}

roots_tarball() { echo "$ROOTS_CACHE/$1-$2.tar.zst"; }

# What the cache entry was built from; a change of any line means a rebuild.
roots_meta_want() {
  printf 'format=%s\nsuite=%s\narch=%s\nvariant=%s\ninclude=%s\nmirror=%s\nsecurity=%s\n' \
    "$ROOTS_CACHE_FORMAT" "$1" "$2" "$ROOTS_VARIANT" "$ROOTS_INCLUDE" "$(roots_mirror)" "$(roots_security_mirror)"
}

# Every mount point at or below DIR, deepest first.
roots_mounts_under() {
  local dir=$1
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

roots_mount() {
  local dir bind src dst
  dir=$(realpath -e "$1") || roots_die "no such root: $1"; shift
  [[ -x $dir/bin/sh || -L $dir/bin ]] || roots_die "$dir does not look like a root file system"
  [[ -z $(roots_mounts_under "$dir") ]] || roots_die "$dir already has mounts (scripts/roots.sh umount $dir)"
  # Explicit returns: callers may run this where set -e is off (left of || or in an if).
  mount -t proc proc "$dir/proc" || return 1
  if ! mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$dir/sys" 2>/dev/null; then
    { mount --rbind /sys "$dir/sys" && mount --make-rslave "$dir/sys"; } || { roots_umount "$dir"; return 1; }
  fi
  { mount --bind /dev "$dir/dev" && mount --bind /dev/pts "$dir/dev/pts"; } || { roots_umount "$dir"; return 1; }
  # An empty /run, as at boot: no /run/systemd/system, so maintainer scripts know no init is running.
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$dir/run" || { roots_umount "$dir"; return 1; }
  for bind in "$@"; do   # extra SRC:DST bind mounts (download caches)
    src=${bind%%:*}; dst=$dir/${bind#*:}
    { mkdir -p "$src" "$dst" && mount --bind "$src" "$dst"; } || { roots_umount "$dir"; return 1; }
  done
}

# Signal whatever still runs with its root inside DIR (by process id), then unmount everything below DIR.
roots_kill_inside() {
  local dir=$1 sig p r left=()
  for sig in TERM KILL; do
    left=()
    for p in /proc/[0-9]*; do
      r=$(readlink "$p/root" 2>/dev/null) || continue
      [[ $r == "$dir" || $r == "$dir"/* ]] && left+=("${p#/proc/}")
    done
    ((${#left[@]})) || return 0
    roots_log "ending ${#left[@]} process(es) still running in $dir ($sig): ${left[*]}"
    kill "-$sig" "${left[@]}" 2>/dev/null || true
    sleep 2
  done
}
roots_umount() {
  local dir m
  dir=$(realpath -m "$1")
  roots_kill_inside "$dir"
  while read -r m; do
    [[ -n $m ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m" || roots_log "could not unmount $m"
  done < <(roots_mounts_under "$dir")
  [[ -z $(roots_mounts_under "$dir") ]] || roots_die "mounts left under $dir: $(roots_mounts_under "$dir" | tr '\n' ' ')"
}

# Run CMD inside a mounted root with a clean environment plus the NAME=VALUE words of the array ROOTS_ENV
# (set it with `local ROOTS_ENV=(...)` in a calling function: bash cannot pass an array as a command prefix),
# killed after ROOTS_TIMEOUT (a timeout(1) duration) if that is set.
roots_exec() {
  local dir=$1; shift
  local env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
    PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-120}" PIP_ROOT_USER_ACTION=ignore)
  local pre=()
  [[ -n ${ROOTS_ENV+x} ]] && env+=("${ROOTS_ENV[@]}")
  [[ -n ${ROOTS_TIMEOUT:-} ]] && pre=(timeout -k 30 "$ROOTS_TIMEOUT")
  if [[ -t 0 ]]; then   # interactive: in the foreground, where Ctrl-C reaches it
    "${pre[@]}" nice -n "$ROOTS_NICE" chroot "$dir" /usr/bin/env -i "${env[@]}" "$@"
  else   # in the background and waited for, so that a caller's trap runs at once on a signal, not when CMD ends
    "${pre[@]}" nice -n "$ROOTS_NICE" chroot "$dir" /usr/bin/env -i "${env[@]}" "$@" <&0 &
    wait $!
  fi
}

# Mount, run CMD (default: a login shell), unmount, whatever happens. Runs in a subshell so that its
# traps do not replace the caller's.
roots_enter() {
  local dir
  dir=$(realpath -e "$1") || roots_die "no such root: $1"; shift
  (($#)) || set -- /bin/bash -l
  (
    roots_mount "$dir" || exit 1
    # shellcheck disable=SC2064  # expand $dir now
    trap "roots_umount '$dir'" EXIT
    trap 'exit 130' INT TERM
    roots_exec "$dir" "$@"
  )
}

# Debootstrap SUITE/ARCH into the cache unless an entry built from the same settings is there.
# Prints the tarball's path. --refresh rebuilds anyway (e.g. for this month's security updates).
roots_build() {
  local suite=$1 arch=$2 refresh=${3:-} tarball meta tmp mirror security
  [[ $suite =~ ^[a-z]+$ ]] || roots_die "bad suite '$suite'"
  roots_host_ready "$arch"
  mkdir -p "$ROOTS_CACHE"
  tarball=$(roots_tarball "$suite" "$arch"); meta=${tarball%.tar.zst}.meta
  exec {lock}>"$ROOTS_CACHE/.$suite-$arch.lock"
  flock "$lock"
  if [[ $refresh != --refresh && -s $tarball && -r $meta ]] && diff -q <(roots_meta_want "$suite" "$arch") \
    <(grep -v '^built=' "$meta") >/dev/null; then
    flock -u "$lock"; exec {lock}>&-
    echo "$tarball"; return 0
  fi
  mirror=$(roots_mirror); security=$(roots_security_mirror)
  tmp=$ROOTS_CACHE/.build-$suite-$arch
  roots_umount "$tmp" 2>/dev/null || true
  rm -rf --one-file-system "$tmp"
  roots_log "debootstrap $suite/$arch ($ROOTS_VARIANT, +$ROOTS_INCLUDE) from $mirror"
  nice -n "$ROOTS_NICE" debootstrap --arch="$arch" --variant="$ROOTS_VARIANT" --include="$ROOTS_INCLUDE" \
    "$suite" "$tmp" "$mirror" >"$ROOTS_CACHE/.build-$suite-$arch.log" 2>&1 \
    || { tail -n 20 "$ROOTS_CACHE/.build-$suite-$arch.log" >&2; roots_umount "$tmp" 2>/dev/null || true
         roots_die "debootstrap $suite/$arch failed (log: $ROOTS_CACHE/.build-$suite-$arch.log)"; }
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$mirror" "$suite" "$mirror" "$suite" "$security" "$suite" >"$tmp/etc/apt/sources.list"
  cp -L /etc/resolv.conf "$tmp/etc/resolv.conf"
  roots_log "applying $suite updates"
  roots_enter "$tmp" sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update -qq && apt-get -y -qq dist-upgrade >/dev/null && apt-get clean \
    && rm -f /usr/sbin/policy-rc.d && rm -rf /var/lib/apt/lists/* /var/log/apt/* /root/.cache' \
    >>"$ROOTS_CACHE/.build-$suite-$arch.log" 2>&1 \
    || roots_die "apt update in $suite/$arch failed (log: $ROOTS_CACHE/.build-$suite-$arch.log)"
  roots_log "packing $tarball"
  tar -C "$tmp" --numeric-owner --xattrs --xattrs-include='*' -cf - . | zstd -q -T0 -3 -o "$tarball.tmp" -f
  mv -f "$tarball.tmp" "$tarball"
  { roots_meta_want "$suite" "$arch"; echo "built=$(date -u +%FT%TZ)"; } >"$meta"
  rm -rf --one-file-system "$tmp"
  flock -u "$lock"; exec {lock}>&-
  echo "$tarball"
}

# A fresh working root in DIR from the cached SUITE/ARCH (built first if missing): host DNS and extra CA
# certificates, and a policy-rc.d that stops maintainer scripts from starting services (there is no init).
roots_prepare() {
  local suite=$1 arch=$2 dir=$3 tarball
  tarball=$(roots_build "$suite" "$arch") || return 1
  dir=$(realpath -m "$dir")
  [[ $dir != / && $dir != "$ROOTS_CACHE" ]] || roots_die "refusing to use $dir as a working root"
  if [[ -e $dir ]]; then roots_cleanup "$dir" || return 1; fi
  mkdir -p "$dir" || return 1
  zstd -q -d -c "$tarball" | tar -C "$dir" --numeric-owner --xattrs --xattrs-include='*' -xpf - \
    || roots_die "could not unpack $tarball into $dir"
  { rm -f "$dir/etc/resolv.conf" && cp -L /etc/resolv.conf "$dir/etc/resolv.conf" && cp /etc/hosts "$dir/etc/hosts" \
    && printf '#!/bin/sh\n# no init in this root: never start services\nexit 101\n' >"$dir/usr/sbin/policy-rc.d" \
    && chmod 755 "$dir/usr/sbin/policy-rc.d"; } || roots_die "could not set up $dir"
  # The host's extra CAs (e.g. a TLS-intercepting egress proxy) so apt over https and pip work in the root.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    # Into the bundle directly (update-ca-certificates takes minutes under qemu); the copies in
    # /usr/local/share/ca-certificates keep them there when a package's trigger rebuilds the bundle.
    { cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/" \
      && awk 1 /usr/local/share/ca-certificates/*.crt >>"$dir/etc/ssl/certs/ca-certificates.crt"; } \
      || roots_die "could not add the host's CA certificates to $dir"
  fi
  echo "$dir"
}

roots_cleanup() {
  local dir
  dir=$(realpath -m "$1")
  [[ $dir != / && $dir != "$ROOTS_CACHE" && $dir != /var && $dir != /var/tmp ]] \
    || roots_die "refusing to delete $dir"
  roots_umount "$dir" || return 1
  [[ -z $(roots_mounts_under "$dir") ]] || roots_die "not deleting $dir: mounts remain"
  rm -rf --one-file-system "$dir"
}

roots_list() {
  local f
  echo "cache $ROOTS_CACHE:"
  for f in "$ROOTS_CACHE"/*.tar.zst; do
    [[ -e $f ]] || continue
    printf '  %-40s %6s  built %s\n' "${f##*/}" "$(du -h "$f" | cut -f1)" "$(sed -n 's/^built=//p' "${f%.tar.zst}.meta" 2>/dev/null)"
  done
  for f in "$ROOTS_CACHE"/apt-archives/* "$ROOTS_CACHE"/pip/*; do
    [[ -d $f ]] && printf '  %-40s %6s\n' "${f#"$ROOTS_CACHE"/}/" "$(du -sh "$f" | cut -f1)"
  done
  echo "mounts under $ROOTS_CACHE or /var/tmp/capturekit-roots:"
  awk '$5 ~ "^('"$ROOTS_CACHE"'|/var/tmp/capturekit-roots)/" { print "  " $5 }' /proc/self/mountinfo
}

roots_main() {
  local cmd=${1:-}; shift || true
  case $cmd in
    build) (($# >= 2)) || roots_die "usage: roots.sh build SUITE ARCH [--refresh]"; roots_build "$@" ;;
    prepare) (($# == 3)) || roots_die "usage: roots.sh prepare SUITE ARCH DIR"; roots_prepare "$@" ;;
    enter) (($# >= 1)) || roots_die "usage: roots.sh enter DIR [CMD...]"; roots_require_root; roots_enter "$@" ;;
    mount) (($# == 1)) || roots_die "usage: roots.sh mount DIR"; roots_require_root; roots_mount "$1" ;;
    umount) (($# == 1)) || roots_die "usage: roots.sh umount DIR"; roots_require_root; roots_umount "$1" ;;
    cleanup) (($# == 1)) || roots_die "usage: roots.sh cleanup DIR"; roots_require_root; roots_cleanup "$1" ;;
    list) roots_list ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

# One line, so that bash has read all of it before running it (the file may be edited meanwhile).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then roots_main "$@"; exit $?; fi
