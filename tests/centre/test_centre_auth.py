"""Every kit request is authenticated; a kit sees and touches only its own uploads and captures."""

from __future__ import annotations

import secrets

import pytest
from centrekit import Tus, make_bundle


def test_missing_invalid_and_revoked_tokens_are_401(centre, kit):
    name, token = kit
    b = make_bundle(centre.sealing_line, name)
    for t in (None, "not-a-token", token[:-2] + "xx"):
        r = Tus(centre.url, t).create(len(b.sealed), b.metadata())
        assert r.status_code == 401 and r.json()["error"] in ("no_token", "bad_token")
        assert r.headers["WWW-Authenticate"] == "Bearer"
    tus = Tus(centre.url, token)
    url = tus.url(tus.create(len(b.sealed), b.metadata()))
    assert tus.patch(url, 0, b.sealed[:100]).status_code == 204
    from centre.kits import revoke_kit

    revoke_kit(centre.centre.engine, name)  # refused at once, by the running server, mid-upload
    for r in (tus.patch(url, 100, b.sealed[100:]), tus.head(url), tus.capture(b.capture_id),
              tus.s.get(f"{centre.url}/api/v1/keys", timeout=10), tus.s.get(f"{centre.url}/api/v1/roster", timeout=10),
              tus.s.post(f"{centre.url}/api/v1/heartbeat", json={}, timeout=10)):
        assert r.status_code == 401, r.request.method + " " + r.request.url
    assert centre.holds(b.capture_id) is None


def test_kit_a_cannot_touch_kit_b_uploads(centre):
    a, b_ = f"ka{secrets.token_hex(3)}", f"kb{secrets.token_hex(3)}"
    ta, tb = centre.add_kit(a), centre.add_kit(b_)
    bundle_b = make_bundle(centre.sealing_line, b_)
    kit_a, kit_b = Tus(centre.url, ta), Tus(centre.url, tb)
    url = kit_b.url(kit_b.create(len(bundle_b.sealed), bundle_b.metadata()))
    kit_b.patch(url, 0, bundle_b.sealed[:64])
    assert kit_a.head(url).status_code == 404  # another kit's upload is as absent as one never made
    assert kit_a.patch(url, 64, bundle_b.sealed[64:]).status_code == 404
    assert kit_a.delete(url).status_code == 404
    assert kit_b.head(url).headers["Upload-Offset"] == "64"  # untouched
    r = kit_a.create(len(bundle_b.sealed), bundle_b.metadata())  # kit A offers kit B's capture
    assert r.status_code == 403 and r.json()["error"] == "not_your_capture"
    kit_b.patch(url, 64, bundle_b.sealed[64:])
    assert kit_b.capture(bundle_b.capture_id).status_code == 200
    assert kit_a.capture(bundle_b.capture_id).status_code == 404


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
def test_other_tus_versions_are_412(centre, kit, version):
    name, token = kit
    tus = Tus(centre.url, token)
    if version is None:
        del tus.s.headers["Tus-Resumable"]
    else:
        tus.s.headers["Tus-Resumable"] = version
    b = make_bundle(centre.sealing_line, name)
    r = tus.create(len(b.sealed), b.metadata())
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
