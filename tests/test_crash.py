"""SIGKILL the daemon at random points of a simulated session, ≥ 50 times: after each restart the
journal and the spool must agree (tests/invariants.py checks it without using our code)."""

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


def test_sigkill_at_random_points_leaves_journal_and_spool_consistent(tmp_path):
    data = tmp_path / "data"
    rng = random.Random(20261125)
    env = {**os.environ, "CAPTUREKIT_CONFIG": str(tmp_path / "absent.toml")}
    (tmp_path / "absent.toml").write_text('kit_id = "kit-crash"\n')
    recovered_something = 0
    for i in range(KILLS):
        run = ["simulate", "-n", "120", "--size", "1014x760", "--qc", "sim", "--readers", "sim", "--seed", str(i),
               "--data-dir", str(data)]
        proc = subprocess.Popen([*CLI, *run], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.9))  # start-up is ~0.4 s, the session ~1.5 s: kill anywhere in it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out = subprocess.run([*CLI, "recover", "--data-dir", str(data)], env=env, capture_output=True, text=True,
                             check=True)
        recovered_something += out.stdout.strip() != "nothing to recover"
        counts = check(data)
    assert counts["captured"] > 0 and counts["void"] > 0
    assert recovered_something > KILLS // 4, "kills should often interrupt a shot"
    # and the kit still works afterwards: a full run completes and agrees with its journal
    done = subprocess.run([*CLI, "simulate", "-n", "20", "--size", "320x240", "--qc", "sim", "--data-dir", str(data)],
                          env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "journal matches the script" in done.stdout
    check(data)
