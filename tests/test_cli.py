"""The capturekit command: roster load, status, session, config, selftest on the simulated kit."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import STUDENTS


def cli(tmp_path, *args, check=True):
    env = {**os.environ, "CAPTUREKIT_CONFIG": str(tmp_path / "kit.toml")}
    if not (tmp_path / "kit.toml").exists():
        (tmp_path / "kit.toml").write_text(f'kit_id = "kit-cli"\ndata_dir = "{tmp_path / "data"}"\n')
    out = subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_roster_load_status_and_sessions(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("id_number,name\n" + "".join(f"{n},s{i}\n" for i, n in enumerate(STUDENTS)))
    out = cli(tmp_path, "roster", "load", str(csv), check=False)  # no kit here yet: nothing is created
    assert out.returncode == 4 and "does not exist" in out.stderr and not (tmp_path / "data").exists()
    (tmp_path / "data").mkdir()
    assert "20 students" in cli(tmp_path, "roster", "load", str(csv)).stdout
    assert "20 students" in cli(tmp_path, "roster", "info").stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("id_number\n123\n")
    out = cli(tmp_path, "roster", "load", str(bad), check=False)
    assert out.returncode == 2 and "line 2" in out.stderr and "length" in out.stderr
    assert "no journal" in cli(tmp_path, "status").stdout
    assert "session 1 opened" in cli(tmp_path, "session", "new", "--school", "10001").stdout
    out = cli(tmp_path, "status")
    assert "session 1" in out.stdout and "roster: 20 student keys" in out.stdout
    assert "session 1 closed" in cli(tmp_path, "session", "close").stdout


def test_config_check_and_defaults(tmp_path):
    assert "configuration OK: kit kit-cli" in cli(tmp_path, "config").stdout
    assert "[camera]" in cli(tmp_path, "config", "--defaults").stdout
    (tmp_path / "kit.toml").write_text("[trigger]\npinn = 3\n")
    out = cli(tmp_path, "config", check=False)
    assert out.returncode == 2 and "trigger.pinn: unknown key" in out.stderr


def test_selftest_on_the_simulated_kit(tmp_path):
    out = cli(tmp_path, "selftest", "--wait-trigger", "0", "--pause", "0.01", check=False)
    assert "PASS  status LED, buzzer, light panel" in out.stdout
    assert "PASS  camera: 4056x3040 JPEG" in out.stdout
    assert "FAIL  roster: 0 students" in out.stdout and out.returncode == 1  # no roster loaded yet: a real problem
    assert "SKIP  trigger" in out.stdout


def test_cancel_without_daemon_is_a_clear_error(tmp_path):
    out = cli(tmp_path, "cancel", check=False)
    assert out.returncode == 5 and "not reachable" in out.stderr
