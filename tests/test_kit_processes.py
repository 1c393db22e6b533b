"""One kit process per data directory, and one-line errors instead of tracebacks — with real processes.

Real ``capturekit run`` daemons, real flocks, a real control socket; small filesystems are real tmpfs mounts
(root only: skipped otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import STUDENTS
from peers.kitproc import Daemon, cli, write_config

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")


@pytest.fixture
def kit(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cfg = write_config(tmp_path / "kit.toml", data)
    csv = tmp_path / "r.csv"
    csv.write_text("id_number,name\n" + "".join(f"{n},s{i}\n" for i, n in enumerate(STUDENTS)))
    assert cli(cfg, "roster", "load", str(csv)).returncode == 0
    return cfg, data


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def no_traceback(out: subprocess.CompletedProcess) -> str:
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    return out.stderr.strip()


def control(sock: Path, payload: bytes, timeout: float = 5.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        if payload:
            s.sendall(payload)
        return json.loads(s.makefile("rb").readline())


def test_second_daemon_refuses_at_once_and_the_first_keeps_its_socket(kit):
    cfg, data = kit
    first = Daemon(cfg).wait_ready()
    try:
        sock = data / "control.sock"
        inode = sock.stat().st_ino
        t0 = time.monotonic()
        second = cli(cfg, "run", timeout=30)
        assert second.returncode == 3 and time.monotonic() - t0 < 10
        err = no_traceback(second)
        assert "in use by another capturekit process" in err and f"pid {first.proc.pid}" in err
        assert sock.stat().st_ino == inode  # never stolen, never deleted
        assert control(sock, b'{"cmd": "cancel"}\n') == {"ok": True}
        # recover refuses while the daemon runs; status needs no lock and works beside it
        rec = cli(cfg, "recover")
        assert rec.returncode == 3 and "recovered at its own start" in no_traceback(rec)
        st = cli(cfg, "status")
        assert st.returncode == 0 and "kit kit-proc" in st.stdout
        # a session command goes through the running daemon (the journal's one writer)
        ses = cli(cfg, "session", "new", "--school", "10001")
        assert ses.returncode == 0 and "opened" in ses.stdout, ses.stderr
    finally:
        assert first.stop() == 0
    assert not (data / "control.sock").exists()


def test_sigkill_never_leaves_a_stale_lock(kit):
    cfg, data = kit
    Daemon(cfg).wait_ready().stop(signal.SIGKILL)
    assert (data / "kit.lock").exists() and (data / "control.sock").exists()  # left behind by the dead one
    again = Daemon(cfg).wait_ready()  # the kernel dropped the flock; the stale socket is replaced
    try:
        assert control(data / "control.sock", b'{"cmd": "accept"}\n')["ok"] is True
    finally:
        assert again.stop() == 0
    rec = cli(cfg, "recover")
    assert rec.returncode == 0, rec.stderr


def test_mistyped_data_dir_creates_nothing(kit, tmp_path):
    cfg, _ = kit
    wrong = tmp_path / "dta"
    for cmd in (["recover"], ["status"], ["session", "new"], ["roster", "info"]):
        out = cli(cfg, *cmd, "--data-dir", str(wrong))
        assert out.returncode == 4 and "does not exist" in no_traceback(out), cmd
        assert not wrong.exists()


def test_malformed_journal_is_refused_in_one_line_and_kept_byte_for_byte(kit):
    cfg, data = kit
    journal = data / "journal.sqlite"
    journal.write_bytes(b"this is not a journal" * 100)
    before = journal.read_bytes()
    for cmd in (["status"], ["recover"], ["session", "close"], ["run"]):
        out = cli(cfg, *cmd)
        assert out.returncode == 4, (cmd, out.stderr)
        assert "not readable as a journal" in no_traceback(out) and "left exactly as found" in out.stderr
    assert journal.read_bytes() == before


@needs_root
def test_permission_denied_is_one_line(kit):
    cfg, data = kit
    Daemon(cfg).wait_ready().stop()
    os.chmod(data, 0o000)
    try:
        roster = ["roster", "load", str(cfg.parent / "r.csv")]
        for cmd in (["status"], ["recover"], ["run"], ["session", "new"], roster):
            out = cli(cfg, *cmd, no_dac_override=True)
            assert out.returncode in (2, 4), (cmd, out.stdout, out.stderr)
            err = no_traceback(out)
            assert len(err.splitlines()) == 1 and ("ermission denied" in err or "not writable" in err), (cmd, err)
    finally:
        os.chmod(data, 0o755)


@needs_root
def test_read_only_data_dir_is_one_line(kit, tmp_path):
    cfg, data = kit
    Daemon(cfg).wait_ready().stop()
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(data), str(ro)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
    try:
        for cmd in (["run"], ["recover"], ["session", "new"]):
            out = cli(cfg, *cmd, "--data-dir", str(ro))
            assert out.returncode == 4, (cmd, out.stderr)
            assert len(no_traceback(out).splitlines()) == 1
        st = cli(cfg, "status", "--data-dir", str(ro))  # read-only is fine for a read-only command
        assert st.returncode == 0, st.stderr
    finally:
        subprocess.run(["umount", str(ro)], check=False)


@needs_root
def test_run_refuses_with_less_free_space_than_a_session_needs(tmp_path):
    with tmpfs(tmp_path / "small", "32m") as data:
        cfg = write_config(tmp_path / "kit.toml", data, extra="[storage]\nmin_free_mb = 100\n")
        out = cli(cfg, "run")
        assert out.returncode == 4 and "MB free" in no_traceback(out) and "storage.min_free_mb" in out.stderr
        assert not (data / "journal.sqlite").exists()  # refused before anything was written


@needs_root
def test_full_disk_while_journalling_a_card_read_is_the_storage_fault(tmp_path):
    with tmpfs(tmp_path / "small", "8m") as data:
        cfg = write_config(tmp_path / "kit.toml", data, extra="[storage]\nmin_free_mb = 1\n")
        csv = tmp_path / "r.csv"
        csv.write_text("id_number\n" + "".join(f"{n}\n" for n in STUDENTS))
        assert cli(cfg, "roster", "load", str(csv)).returncode == 0
        d = Daemon(cfg).wait_ready()
        filler = data / "filler"
        with open(filler, "wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        reply = control(data / "control.sock", json.dumps(
            {"cmd": "identity", "kind": "id_number", "key": STUDENTS[0]}).encode() + b"\n")
        assert reply["ok"] is True
        assert d.wait_exit(30) == 70
        assert "storage failed" in d.stderr and "Traceback" not in d.stderr
        filler.unlink()
