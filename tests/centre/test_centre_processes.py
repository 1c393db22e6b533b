"""The centre as processes: two stateless ones sharing PostgreSQL + S3, a SIGKILL mid-upload, start-up errors,
and the schema its migrations build matching the code's on both databases."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
from centrekit import Tus, make_bundle, new_pg_s3

from centre.db import metadata, migrate


def test_an_upload_begun_on_one_process_resumes_on_another(pg, s3, tmp_path, centre_keys):
    first = new_pg_s3(tmp_path / "one", pg, s3, keys_dir=centre_keys)
    with first, first.second() as other:
        token = first.add_kit("kit-h")
        bundles = [make_bundle(first.sealing_line, "kit-h", shot, photo_size=(600, 400)) for shot in (1, 2)]
        a, b = Tus(first.url, token), Tus(other.url, token)
        for n, bundle in enumerate(bundles):  # the kit alternates between the processes
            start, end = (a, b) if n == 0 else (b, a)
            url = start.url(start.create(len(bundle.sealed), bundle.metadata()))
            start.patch(url, 0, bundle.sealed[:1000])
            resumed = url.replace(start.base, end.base)
            offset = int(end.head(resumed).headers["Upload-Offset"])
            assert offset == 1000
            r = end.patch(resumed, offset, bundle.sealed[offset:])
            assert r.headers["Capturekit-Status"] == "received"
            assert start.head(url).headers["Capturekit-Sha256"] == bundle.sha256
        first.kill()  # SIGKILL one process in the middle of the next upload: the other carries on
        third = make_bundle(first.sealing_line, "kit-h", 3)
        url = b.url(b.create(len(third.sealed), third.metadata()))
        b.patch(url, 0, third.sealed[:500])
        assert b.patch(url, 500, third.sealed[500:]).headers["Capturekit-Status"] == "received"


def test_a_centre_killed_mid_upload_resumes_after_restart(tmp_path, centre_keys):
    from peers.centre import CentreServer

    with CentreServer(tmp_path, keys_dir=centre_keys) as c:
        token = c.add_kit("kit-k")
        bundle = make_bundle(c.sealing_line, "kit-k", photo_size=(600, 400))
        tus = Tus(c.url, token)
        url = tus.url(tus.create(len(bundle.sealed), bundle.metadata()))
        tus.patch(url, 0, bundle.sealed[:2000])
        c.kill()
        assert c.holds(bundle.capture_id) is None
        c.start()
        offset = int(tus.head(url).headers["Upload-Offset"])
        assert offset == 2000
        assert tus.patch(url, offset, bundle.sealed[offset:]).headers["Capturekit-Status"] == "received"


def test_serve_without_a_key_says_how_to_make_one(tmp_path):
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "centre", "serve", "--data-dir", str(tmp_path),
                          "--keys-dir", str(tmp_path / "keys"), "--config", str(tmp_path / "none.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no such configuration file" in out.stderr
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "centre", "serve", "--data-dir", str(tmp_path),
                          "--keys-dir", str(tmp_path / "keys")], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "CAPTUREKIT_CENTRE_CONFIG": ""})
    assert out.returncode == 2, out.stderr
    assert f"capturekit centre keygen --out {tmp_path / 'keys'}" in out.stderr


@pytest.mark.parametrize("text, key", [("listen_port = 0\n", "listen_port"), ("listen_port = 'x'\n", "listen_port"),
                                       ("storage_url = 'ftp://x'\n", "storage_url"), ("colour = 1\n", "colour"),
                                       ("open_lease_s = 0\n", "open_lease_s: must be 1..3600")])
def test_config_errors_name_the_key(tmp_path, text, key):
    from appliance.config import ConfigError
    from centre.config import load

    path = tmp_path / "centre.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key):
        load(path)


@pytest.mark.parametrize("db", ["sqlite", "pg"])
def test_migrations_build_exactly_the_schema_in_the_code(db, pg, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from centre.db import engine_for

    url = f"sqlite:///{tmp_path / 'm.sqlite'}" if db == "sqlite" else pg.create_database(f"m_{secrets.token_hex(3)}")
    engine = engine_for(url)
    migrate(engine)
    migrate(engine)  # idempotent: a second process starting finds nothing to do
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    engine.dispose()
