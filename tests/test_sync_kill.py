"""Kill -9 campaign: SIGKILL the sync daemon and, separately, the centre at random moments while a 200-capture
backlog goes up, restart them, at least 30 rounds. The centre must end with every capture exactly once, every
SHA-256 matching, no partial object visible as a capture, and the kit's journal confirmed for each."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import CHEAP, sealing_line
from peers.centre import CentreServer

from appliance import config as config_mod
from appliance.simulate import run, sim_config

ROUNDS = int(os.environ.get("CAPTUREKIT_SYNC_KILLS", "30"))
CLI = [sys.executable, "-m", "appliance.cli"]


def _statuses(data) -> dict[str, str]:
    try:
        db = sqlite3.connect(f"file:{data / 'journal.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return dict(db.execute("SELECT capture_id, status FROM uploads"))
        finally:
            db.close()
    except sqlite3.Error:
        return {}


def test_kill_sync_and_centre_at_random_moments(tmp_path, centre_keys):
    from sqlalchemy import select

    from centre.db import bundles, captures

    rng = random.Random(20261201)
    data = tmp_path / "kit"
    base = config_mod.Config()
    cfg = sim_config(dataclasses.replace(
        base, kit_id="kit-kill", sealing=dataclasses.replace(base.sealing, public_keys=(sealing_line(centre_keys),)),
        privacy=dataclasses.replace(base.privacy, argon2_opslimit=CHEAP[0], argon2_memlimit_kib=CHEAP[1] // 1024)),
        data, (1014, 760))
    summary = run(cfg, 200, seed=4, qc="sim", sources=False)
    assert not summary["mismatches"] and summary["bundles"] >= 200
    centre = CentreServer(tmp_path / "centre", keys_dir=centre_keys).start()
    token = centre.add_kit("kit-kill")
    kit_toml = tmp_path / "kit.toml"
    kit_toml.write_text(f'kit_id = "kit-kill"\ndata_dir = "{data}"\n'
                        f'[sealing]\npublic_keys = ["{cfg.sealing.public_keys[0]}"]\n'
                        f'[sync]\ncentre_url = "{centre.url}"\ntoken = "{token}"\nchunk_bytes = 65536\n'
                        "bandwidth_kbps = 12000\nbackoff_initial_s = 0.1\nbackoff_max_s = 1.0\nrescan_s = 5\n"
                        "connect_timeout_s = 2\ninactivity_timeout_s = 3\n")
    log = open(tmp_path / "sync.log", "ab")  # noqa: SIM115 - closed at the end

    def start_sync() -> subprocess.Popen:
        return subprocess.Popen([*CLI, "--config", str(kit_toml), "sync"], stdout=log, stderr=log)

    sync = start_sync()
    kills = {"sync": 0, "centre": 0}
    try:
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(0.2, 1.2))
            victim = rng.choice(["sync", "centre"])
            kills[victim] += 1
            if victim == "sync":
                sync.send_signal(signal.SIGKILL)
                sync.wait()
                sync = start_sync()
            else:
                centre.kill()
                centre.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            st = _statuses(data)
            if len(st) >= summary["bundles"] and set(st.values()) == {"confirmed"}:
                break
            time.sleep(0.5)
    finally:
        sync.send_signal(signal.SIGTERM)
        sync.wait(30)
        log.close()
    assert kills["sync"] >= 5 and kills["centre"] >= 5, kills
    db = sqlite3.connect(f"file:{data / 'journal.sqlite'}?mode=ro", uri=True)
    kit = dict(db.execute("SELECT capture_id, sha256 FROM frames WHERE dest = 'outbox' AND status = 'stored'"))
    db.close()
    statuses = _statuses(data)
    assert len(kit) == summary["bundles"] and all(statuses.get(c) == "confirmed" for c in kit), \
        {s: list(statuses.values()).count(s) for s in set(statuses.values())}
    store = centre.centre.storage
    centre.opened(timeout=120)  # a centre killed while opening: its lease runs out and the next process opens it
    with centre.centre.engine.connect() as conn:
        held = {r.capture_id: r for r in conn.execute(select(bundles))}
        shown = {r.capture_id for r in conn.execute(select(captures.c.capture_id))}
    assert set(held) == set(kit) == shown  # exactly once: nothing missing, nothing extra, no partial as a capture
    for cid, sha in kit.items():
        row = held[cid]
        assert row.status == "stored" and row.sha256 == sha
        assert hashlib.sha256(store.get(row.object_key)).hexdigest() == sha  # the stored object is whole
    centre.stop()
