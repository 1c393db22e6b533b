"""SIGKILL the daemon at random points of a simulated session, ≥ 50 times, and recovery itself in the
middle of its steps: after each restart the journal and the spool must agree (tests/invariants.py checks
it without using our code)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from invariants import check

KILLS = int(os.environ.get("CAPTUREKIT_KILLS", "50"))
CLI = [sys.executable, "-m", "appliance.cli"]
# `capturekit recover`, SIGKILLed by itself right after its k-th journal write (a crash between two steps)
KILLED_RECOVERY = """
import os, signal, sys
from appliance import journal
from appliance.cli import main
k, calls, real = int(sys.argv[1]), [0], journal.Journal.event
def event(self, *a, **kw):
    real(self, *a, **kw)
    calls[0] += 1
    if calls[0] >= k:
        os.kill(os.getpid(), signal.SIGKILL)
journal.Journal.event = event
sys.exit(main(sys.argv[2:]))
"""


def _frames(data) -> int:
    """Frames in the journal so far (read-only; 0 before the daemon made it)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{data / 'journal.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_at_random_points_leaves_journal_and_spool_consistent(tmp_path):
    data = tmp_path / "data"
    rng = random.Random(20261125)
    env = {**os.environ, "CAPTUREKIT_CONFIG": str(tmp_path / "absent.toml")}
    (tmp_path / "absent.toml").write_text('kit_id = "kit-crash"\n[privacy]\nargon2_opslimit = 1\n'
                                          'argon2_memlimit_kib = 8\n')  # cheap roster hashing: the kills matter here
    recovered_something = killed_in_recovery = 0
    opened: set[str] = set()  # bundles already opened and checked (they never change)
    for i in range(KILLS):
        run = ["simulate", "-n", "120", "--size", "1014x760", "--qc", "sim", "--readers", "sim", "--seed", str(i),
               "--data-dir", str(data)]
        proc = subprocess.Popen([*CLI, *run], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill anywhere in the session, whatever this machine's speed: after a random number of this run's
        # frames reached the journal (0: during start-up and recovery), plus a random fraction of a shot
        frames_before = _frames(data)
        target, deadline = frames_before + rng.choice([0, *range(1, 80)]), time.monotonic() + 60
        while _frames(data) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.08))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = False
        if rng.random() < 0.6:  # and kill recovery itself between two of its steps
            k = rng.randint(1, 4)
            r = subprocess.run([sys.executable, "-c", KILLED_RECOVERY, str(k), "recover", "--data-dir", str(data)],
                               env=env, capture_output=True, text=True)
            killed = r.returncode == -signal.SIGKILL
            killed_in_recovery += killed
        out = subprocess.run([*CLI, "recover", "--data-dir", str(data)], env=env, capture_output=True, text=True,
                             check=True)
        recovered_something += killed or out.stdout.strip() != "nothing to recover"
        counts = check(data, opened=opened)
    assert counts["captured"] > 0 and counts["void"] > 0
    assert recovered_something > KILLS // 4, "kills should often interrupt a shot"
    assert killed_in_recovery > KILLS // 10, "recovery itself should often be killed mid-way"
    # and the kit still works afterwards: a full run completes and agrees with its journal
    done = subprocess.run([*CLI, "simulate", "-n", "20", "--size", "320x240", "--qc", "sim", "--data-dir", str(data)],
                          env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "journal matches the script" in done.stdout
    check(data)
