"""The opener gives way to a burst of uploads, but never for longer than its limit (a real SQLite + directory)."""

from __future__ import annotations

import json
import secrets
import time

from centrekit import make_bundle
from sqlalchemy import select

from centre.config import CentreConfig
from centre.context import open_centre
from centre.db import bundles
from centre.ingest import receive_whole
from centre.kits import add_kit, kit_by_name
from centre.opener import Opener
from centre.sealing import keygen


def test_opening_waits_for_a_pause_in_a_burst_but_not_past_its_limit(tmp_path):
    keygen(tmp_path / "keys")
    c = open_centre(CentreConfig(data_dir=str(tmp_path / "data"), keys_dir=str(tmp_path / "keys")), keys=True)
    try:
        add_kit(c.engine, "kit-burst")
        kit = kit_by_name(c.engine, "kit-burst")
        line = next((tmp_path / "keys").glob("*.pub")).read_text().strip()

        def receive() -> tuple[str, float]:
            b = make_bundle(line, kit.name, journal=secrets.token_hex(4))
            header = json.dumps(b.header.to_dict())
            receive_whole(c.engine, kit.id, secrets.token_hex(16), b.capture_id, b.sha256, header, header,
                          len(b.sealed), b.sha256, lambda key: c.storage.put(key, b.sealed), lambda: None)
            return b.capture_id, time.monotonic()

        def status(cid: str) -> str:
            with c.engine.connect() as conn:
                return conn.execute(select(bundles.c.status).where(bundles.c.capture_id == cid)).scalar_one()

        first, at = receive()
        op = Opener(c.engine, c.storage, c.keys.ring, lease_s=5, sweep_s=0.2, quiet_s=1.0, max_delay_s=3.0)
        op.poke()  # uploads are arriving
        op.start()
        try:
            while time.monotonic() - at < 1.5:
                op.poke()
                time.sleep(0.05)
            assert status(first) == "received"  # kits first: not opened while the burst lasts
            while status(first) == "received" and time.monotonic() - at < 10:
                op.poke()  # the burst goes on ...
                time.sleep(0.05)
            assert status(first) == "stored"  # ... but a bundle waits at most max_delay_s
            assert time.monotonic() - at >= 3.0
            second, at = receive()  # and with no burst, a bundle is opened at the next look
            while status(second) == "received" and time.monotonic() - at < 10:
                time.sleep(0.05)
            assert status(second) == "stored" and time.monotonic() - at < 3.0
        finally:
            op.stop()
    finally:
        c.close()
