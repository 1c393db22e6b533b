"""The pages' rules over real HTTP (no browser): the students' form answers alike for every key that does not
match, codes that a kit verifies, rate limits, login throttling, cookies, logout, exports with progress, the
access log, thumbnails made once, and every word in both languages."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import zxingcpp
from PIL import Image
from sqlalchemy import select
from webpeer import PASSWORD, Client

from appliance.makeup_qr import MakeupVerifier


def _session(site, day_offset: int = 7) -> int:
    from centre.makeup import add_session

    return add_session(site.server.centre.engine, dt.date.today() + dt.timedelta(days=day_offset), "14:30",
                       "17:30", "Hall", 100)


def _normal(html: str) -> str:
    """The page without what differs between any two requests (the form token)."""
    return re.sub(r'name="csrf" value="[^"]+"', "", html)


def _qr_text(html: str) -> str | None:
    m = re.search(r'id="makeup-qr" class="qr" src="data:image/png;base64,([^"]+)"', html)
    if not m:
        return None
    return zxingcpp.read_barcodes(Image.open(io.BytesIO(base64.b64decode(m.group(1)))))[0].text


def test_makeup_answers_alike_unless_key_and_student_number_match(site):
    sid = _session(site)
    st = site.a_students[1]
    url = f"/m/{site.a}"
    answers = {}
    for label, key, second in (("unknown", "110101199001011237", "A-0001"),  # a valid ID number, on no roster
                               ("wrong_no", st["id_number"], "甲-9999"),  # on the roster, wrong student number
                               ("other_school", site.b_students[0]["id_number"], site.b_students[0]["student_no"]),
                               ("code", "CHSI-not-a-code-of-anyone", "")):
        c = Client(site.url)
        c.get(url)
        r = c.post(url, {"key": key, "second": second, "session": str(sid)})
        assert r.status_code == 200, (label, r.status_code)
        assert _qr_text(r.text) is None and 'id="no-match"' in r.text
        answers[label] = _normal(r.text)
    assert len(set(answers.values())) == 1  # byte for byte the same page
    c = Client(site.url)
    c.get(url)
    r = c.post(url, {"key": st["id_number"], "second": f" {st['student_no']} ", "session": str(sid)})
    text = _qr_text(r.text)
    assert r.status_code == 200 and text and text.startswith("CKM1:")
    verifier = MakeupVerifier([site.server.makeup_key.verify_key.encode()], [site.a])
    payload = verifier.verify(text, dt.datetime.now(dt.UTC))
    assert payload.key == st["id_number"] and payload.scope == site.a
    assert payload.expires_at.date() >= (dt.date.today() + dt.timedelta(days=6))
    site_student = site.a_students[-1]  # a joint-programme site's student, from the main school's poster
    r = c.post(url, {"key": site_student["id_number"], "second": site_student["student_no"], "session": str(sid)})
    assert verifier.__class__([site.server.makeup_key.verify_key.encode()], [site.a_site]).verify(
        _qr_text(r.text), dt.datetime.now(dt.UTC)).scope == site.a_site
    from centre.db import makeup_registrations

    with site.server.centre.engine.connect() as conn:
        regs = conn.execute(select(makeup_registrations).where(makeup_registrations.c.session_id == sid)).all()
    assert {r.identity_key for r in regs} == {st["id_number"], site_student["id_number"]}  # none for the others


def test_makeup_form_errors_are_next_to_their_fields_and_need_no_roster(site):
    c = Client(site.url)
    c.get(f"/m/{site.a}")
    r = c.post(f"/m/{site.a}", {"key": "110101199001011237", "second": "", "session": "999999"})
    assert r.status_code == 400 and 'id="err-second"' in r.text and 'id="err-session"' in r.text
    r = c.post(f"/m/{site.a}", {"key": "110101199001011230", "session": "999999"})  # a wrong check digit
    assert r.status_code == 400 and 'id="err-key"' in r.text
    assert c.get(f"/m/{site.a}").status_code == 200 and c.get("/m/NOSCHOOL").status_code == 404


def test_makeup_rate_limit_is_the_same_for_every_key(site):
    sid = _session(site)
    c = Client(site.url)
    c.get(f"/m/{site.a}")
    codes = [c.post(f"/m/{site.a}", {"key": f"CHSI-guess-{i}", "session": str(sid)}).status_code for i in range(10)]
    assert codes == [200] * 10
    st = site.a_students[0]
    r = c.post(f"/m/{site.a}", {"key": st["id_number"], "second": st["student_no"], "session": str(sid)})
    assert r.status_code == 429 and "Retry-After" in r.headers and _qr_text(r.text) is None


def test_login_is_throttled_and_cookies_are_safe(site):
    c = Client(site.url)
    for _ in range(5):
        c.get("/login")
        assert c.post("/login", {"username": "staff-viewer", "password": "wrong password!"}).status_code == 401
    c.get("/login")
    r = c.post("/login", {"username": "staff-viewer", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60  # even the right password waits
    other = Client(site.url)
    r = other.login("staff-op")
    cookie = r.headers["set-cookie"]
    assert "ck_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # plain http on loopback (secure_cookies = "auto")
    import requests

    https = {"X-Forwarded-Proto": "https"}  # what a TLS proxy on this host sends
    r = requests.get(f"{site.url}/login", headers=https, timeout=10)
    anon = r.cookies["ck_anon"]
    assert "Secure" in r.headers["set-cookie"]
    r = requests.post(f"{site.url}/login", headers={**https, "Cookie": f"ck_anon={anon}"}, allow_redirects=False,
                      data={"csrf": anon, "username": "staff-exp", "password": PASSWORD}, timeout=10)
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    assert other.get("/staff").status_code == 200
    old = other.s.cookies.get("ck_session")
    assert other.post("/logout").status_code == 303
    stale = Client(site.url)
    stale.s.cookies.set("ck_session", old)
    r = stale.get("/staff")
    assert r.status_code == 303 and r.headers["Location"].startswith("/login")  # ended on the server too


def test_export_with_progress_download_and_the_access_log(site):
    exporter = Client(site.url)
    exporter.login("staff-exp")
    r = exporter.post("/staff/exports", {"school": site.a})
    assert r.status_code == 303
    job_url = r.headers["Location"]
    for _ in range(100):
        page = exporter.get(job_url)
        if 'data-status="done"' in page.text:
            break
        assert 'data-status="failed"' not in page.text, page.text
        assert '<meta http-equiv="refresh"' in page.text and "<progress" in page.text  # refreshes itself
        import time

        time.sleep(0.1)
    assert "5 张照片" in page.text or "5 photos" in page.text
    z = exporter.get(job_url + "/download")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    jpgs = [n for n in names if n.endswith(".jpg")]
    assert len(jpgs) == 5 and any(n.endswith(f"/{site.a}.csv") for n in names)
    cid = next(iter(site.captures.values()))
    assert exporter.get(f"/photos/{cid}.jpg").headers["content-type"] == "image/jpeg"
    op = Client(site.url)
    op.login("staff-op")
    log = op.get("/staff/access-log?user=staff-exp").text
    assert log.count("导出</td>") >= 5 and "下载导出包" in log and "查看照片" in log
    assert site.a_students[0]["name"] in log


def test_thumbnails_are_made_once_and_kept_in_the_store(site):
    a = Client(site.url)
    a.login("contact-a")
    cid = site.captures[site.a_students[2]["id_number"]]
    first = a.get(f"/photos/{cid}/thumb.jpg")
    assert first.status_code == 200
    with Image.open(io.BytesIO(first.content)) as img:
        assert img.size == (160, 213)
    storage = site.server.centre.storage
    from centre.db import captures

    with site.server.centre.engine.connect() as conn:
        sha = conn.execute(select(captures.c.derivative_sha256).where(captures.c.capture_id == cid)).scalar()
    key = f"thumbs/{cid}/{sha}-160.jpg"
    assert storage.exists(key)
    storage.put(key, first.content + b"")  # the cached object is what is served from now on
    assert a.get(f"/photos/{cid}/thumb.jpg").content == storage.get(key)


def test_every_word_is_there_in_both_languages(site):
    from centre.web.i18n import MESSAGES

    assert all(len(pair) == 2 and all(pair) for pair in MESSAGES.values())
    here = Path(__file__).resolve().parents[2] / "centre" / "web"
    used = set()
    for t in (here / "templates").glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z_.0-9]+)'", t.read_text()))
    for py in [*here.glob("*.py"), here.parent / "makeup.py", here.parent / "errata.py"]:
        used |= set(re.findall(r'"(err\.[a-z_]+)"', py.read_text()))
    prefixes = {k for k in used if k.endswith((".", "_"))}  # t('plan.w_' + warning) and the like
    missing = sorted(k for k in used - prefixes if k not in MESSAGES)
    assert not missing
    from centre import errata, makeup  # noqa: F401 - the codes the dynamic keys are built from

    dynamic = ([f"errata.s_{s}" for s in errata.STATUSES] + [f"errata.k_{k}" for k in errata.KINDS]
               + [f"errata.f_{f}" for f in errata.FIELDS] + [f"day.{d}" for d in range(7)]
               + [f"job.{s}" for s in ("queued", "running", "done", "failed", "interrupted")]
               + [f"plan.w_{w}" for w in ("over_booked", "tight", "kit_clash", "no_students")]
               + [f"err.{e}" for e in ("too_long", "bad_id_number", "unknown_session", "session_full",
                                       "unknown_field", "same_as_wrong")])
    assert not [k for k in dynamic if k not in MESSAGES]
    c = Client(site.url)
    zh = c.get("/login").text
    c.get("/lang/en?next=/login")
    en = c.get("/login").text
    assert "登录" in zh and "Log in" in en and "登录" not in en and 'lang="en"' in en
    assert c.get("/lang/en?next=//evil.example").headers["Location"] == "/"  # no open redirect


def test_the_board_tally_follows_captures_and_roster_loads(site, tmp_path):
    """The board's running counts equal a direct count (selection.progress) after captures, a retake, a reload."""
    from centrekit import Tus, make_bundle
    from webpeer import roster_rows, write_roster

    from centre import board, tally
    from centre.db import schools
    from centre.rosters import load_roster
    from centre.selection import progress

    engine = site.server.centre.engine
    codes = (site.a, site.a_site, site.b)

    def direct() -> dict[str, tuple[int, int, int]]:
        out = {c: (0, 0, 0) for c in codes}
        with engine.connect() as conn:
            for code in (site.a, site.b):
                sid = conn.execute(select(schools.c.id).where(schools.c.code == code)).scalar()
                for p in progress(conn, sid):
                    n, s, r = out[p.school]
                    out[p.school] = (n + p.students, s + p.photographed, r + p.retakes)
        return out

    def on_board() -> dict[str, tuple[int, int, int]]:
        tally.refresh(engine, force=True)
        with engine.connect() as conn:
            rows, _ = board.school_rows(conn, 1, 500)
        return {r["code"]: (r["students"], r["shot"], r["retakes"]) for r in rows if r["code"] in codes}

    before = on_board()
    assert before == direct()
    tus = Tus(site.url, site.token)
    st = site.a_students[6]
    for frame in (1, 2):  # a new student, and their retake
        tus.upload(make_bundle(site.server.sealing_line, site.kit, 700, frame, key=st["id_number"], journal="tally"))
    site.server.opened()
    after = on_board()
    assert after == direct()
    assert after[site.a][1] == before[site.a][1] + 1 and after[site.a][2] == before[site.a][2] + 1
    more = [*site.b_students, *roster_rows("乙新", 1, region="110106")]
    load_roster(engine, site.b, write_roster(tmp_path / "b2.csv", more))
    reloaded = on_board()
    assert reloaded == direct() and reloaded[site.b][0] == len(more) and reloaded[site.b][1] == 1
    load_roster(engine, site.b, write_roster(tmp_path / "b3.csv", site.b_students))  # as the other tests expect
    assert on_board() == direct()
