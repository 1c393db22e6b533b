"""`capturekit simulate --students 200` completes, and its summary matches the journal."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from invariants import check


def test_simulate_200_students_summary_matches_journal(tmp_path):
    data = tmp_path / "run"
    env = {**os.environ, "CAPTUREKIT_CONFIG": str(tmp_path / "kit.toml")}
    (tmp_path / "kit.toml").write_text('kit_id = "kit-sim-test"\n')
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "simulate", "--students", "200", "--size",
                          "1014x760", "--data-dir", str(data), "--json"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["mismatches"] == []
    db = sqlite3.connect(data / "journal.sqlite")
    sid = summary["session"]
    shots = dict(db.execute("SELECT status, COUNT(*) FROM shots WHERE session_id=? GROUP BY status", [sid]))
    frames = dict(db.execute("SELECT f.status, COUNT(*) FROM frames f JOIN shots s ON s.number=f.shot"
                             " WHERE s.session_id=? GROUP BY f.status", [sid]))
    voids = db.execute("SELECT void_reason FROM shots WHERE status='void' AND session_id=?", [sid]).fetchall()
    db.close()
    assert summary["shots_captured"] == shots["captured"] == 200  # every student on the roster got a photo
    assert summary["shots"] == shots["captured"] + shots["void"]
    assert sum(summary["voids"].values()) == shots["void"] == len(voids)
    assert summary["frames_stored"] == frames["stored"] == summary["bundles"]
    assert summary["frames_rejected"] == frames.get("rejected", 0) and summary["qc_retakes"] == frames["rejected"]
    assert summary["frames_failed"] == frames.get("failed", 0) > 0
    assert summary["retakes"] > 0 and summary["triggers_ignored"] > 0 and summary["refused_identities"] > 0
    assert set(summary["voids"]) >= {"superseded", "timeout", "operator cancel"}
    assert 1.5 < summary["students_per_minute"] < 3.0  # 90..180 an hour at the script's classroom pace
    counts = check(data)
    assert counts["bundles"] == frames["stored"]


def test_simulate_human_summary(tmp_path):
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "simulate", "-n", "12", "--size", "320x240",
                          "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CAPTUREKIT_CONFIG": str(tmp_path / "none.toml")})
    # an explicitly named config that does not exist is an error naming the file
    assert out.returncode == 2 and "none.toml" in out.stderr
    env = {k: v for k, v in os.environ.items() if k != "CAPTUREKIT_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "simulate", "-n", "12", "--size", "320x240",
                          "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "journal matches the script" in out.stdout and "captured" in out.stdout
