"""The unit files under a real ``systemd-analyze`` (CI has the binaries but no running systemd).

``security --offline=true`` rates each unit; the issue asks for 3.0 ("OK") or lower. ``verify`` runs
against a throw-away root holding the distribution's own units (so ``sysinit.target`` & co. resolve),
our units in ``/etc/systemd/system`` and an executable where ``ExecStart=`` points. The unit files are
also read as data to pin what the daemons rely on (ordering, exit codes, address families, devices).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
SERVICES = ("capturekit.service", "capturekit-sync.service", "capturekit-centre.service")
MAX_EXPOSURE = 3.0
ANALYZE = shutil.which("systemd-analyze")
DIST_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                   if (p / "sysinit.target").exists()), None)

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (apt install systemd)")


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (keys repeat in unit files)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path.name}: {line!r} outside a section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def words(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> list[str]:
    return " ".join(unit.get(section, {}).get(key, [])).split()


def exposure(unit_file: Path) -> float:
    """The overall exposure level `systemd-analyze security --offline=true` prints for ``unit_file``."""
    out = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(unit_file)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert m, f"no exposure level in the output:\n{out.stdout}\n{out.stderr}"
    return float(m.group(1))


@pytest.mark.parametrize("name", SERVICES)
def test_security_exposure_at_most_3(name):
    score = exposure(UNITS / name)
    assert score <= MAX_EXPOSURE, f"{name}: exposure {score} > {MAX_EXPOSURE}"


def test_exposure_parser_sees_an_unhardened_unit(tmp_path):
    """The same measurement rates a bare unit far above the limit: the check can fail."""
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(bare) > 9.0


def _verify_root(tmp_path: Path, units: dict[str, str]) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree(DIST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for name, text in units.items():
        (root / "etc/systemd/system" / name).write_text(text)
        for exe in {v.split()[0].lstrip("-@:+!") for v in parse_unit(root / "etc/systemd/system" / name)
                    .get("Service", {}).get("ExecStart", [])}:
            target = root / exe.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("#!/bin/sh\nexit 0\n")
            target.chmod(0o755)
    return root


def _verify(root: Path, names: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", f"--root={root}", *names], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(DIST_UNITS is None, reason="no distribution units (sysinit.target) on this machine")
def test_verify_every_unit(tmp_path):
    root = _verify_root(tmp_path, {n: (UNITS / n).read_text() for n in SERVICES})
    out = _verify(root, list(SERVICES))
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


@pytest.mark.skipif(DIST_UNITS is None, reason="no distribution units (sysinit.target) on this machine")
def test_verify_rejects_a_broken_unit(tmp_path):
    text = (UNITS / "capturekit.service").read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter")
    root = _verify_root(tmp_path, {"capturekit.service": text})
    out = _verify(root, ["capturekit.service"])
    assert "stricter" in out.stderr, out.stderr


def test_capture_never_waits_for_the_network():
    u = parse_unit(UNITS / "capturekit.service")
    ordering = words(u, "Unit", "After") + words(u, "Unit", "Wants") + words(u, "Unit", "Requires")
    assert not [t for t in ordering if t.startswith("network")], ordering
    assert words(u, "Service", "RestrictAddressFamilies") == ["AF_UNIX"]
    assert words(u, "Service", "PrivateNetwork") == ["yes"]
    assert words(u, "Unit", "RequiresMountsFor") == ["/var/lib/capturekit"]


def test_sync_and_centre_start_after_the_network():
    for name in ("capturekit-sync.service", "capturekit-centre.service"):
        u = parse_unit(UNITS / name)
        assert "network-online.target" in words(u, "Unit", "After"), name
        assert "network-online.target" in words(u, "Unit", "Wants"), name
        assert sorted(words(u, "Service", "RestrictAddressFamilies")) == ["AF_INET", "AF_INET6", "AF_UNIX"], name


@pytest.mark.parametrize("name", SERVICES)
def test_notify_watchdog_restart_and_limits(name):
    u = parse_unit(UNITS / name)
    s = u["Service"]
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["Restart"] == ["always"]
    assert "2" in words(u, "Service", "RestartPreventExitStatus"), "a configuration error must not restart in a loop"
    assert not {"70", "75", "3"} & set(words(u, "Service", "RestartPreventExitStatus"))
    assert int(u["Unit"]["StartLimitBurst"][0]) >= 3 and int(u["Unit"]["StartLimitIntervalSec"][0]) >= 60
    assert s["SyslogIdentifier"] == [name.removesuffix(".service")]
    assert "@system-service" in words(u, "Service", "SystemCallFilter")
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"),
                       ("ProtectKernelLogs", "yes"), ("DevicePolicy", "closed")):
        assert s.get(key) == [value], f"{name}: {key}"
    assert s["ReadWritePaths"], name
    assert s["User"][0].startswith("capturekit"), name


def test_capture_devices_are_exactly_the_kits():
    s = parse_unit(UNITS / "capturekit.service")["Service"]
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert allowed == {"char-video4linux", "char-media", "char-dma_heap", "char-gpiochip", "char-ttyUSB",
                       "char-ttyACM", "char-ttyAMA", "char-input"}
    assert s.get("PrivateDevices") is None, "PrivateDevices would hide the camera and GPIO"
    assert "LG_WD=/run/capturekit" in " ".join(s["Environment"]), "lgpio needs a writable directory"
    assert s["RuntimeDirectory"] == ["capturekit"]


def test_sync_has_no_devices_and_shares_the_journal():
    s = parse_unit(UNITS / "capturekit-sync.service")["Service"]
    assert s["PrivateDevices"] == ["yes"] and "DeviceAllow" not in s, "sync opens no device"
    capture = parse_unit(UNITS / "capturekit.service")["Service"]
    assert s["User"] == capture["User"] and s["Group"] == capture["Group"], "both write the one journal"
    assert s["ReadWritePaths"] == capture["ReadWritePaths"] and s["UMask"] == capture["UMask"]
    assert "StateDirectory" not in s, "two units owning one StateDirectory would fight over its owner"


def test_journald_cap():
    j = parse_unit(UNITS / "journald-capturekit.conf")["Journal"]
    assert j["SystemMaxUse"] == ["50M"] and j["Storage"] == ["persistent"]
