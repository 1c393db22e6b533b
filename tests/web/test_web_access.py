"""Who may call what: every route of the web app against this file's own table, for every role, over real HTTP.

The table below is the specification; the routes come from the app itself, so a route added without an entry
here fails the test. School B's contact then tries every school page and every photo URL with school A's ids.
"""

from __future__ import annotations

import re

import pytest
from webpeer import ROLES

# (method, path) -> who is let through: the policies are defined once, below
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/"): "public",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "login",
    ("GET", "/lang/{lang}"): "public",
    ("GET", "/photos/{capture_id}.jpg"): "photo",
    ("GET", "/photos/{capture_id}/thumb.jpg"): "photo",
    ("GET", "/m/{code}"): "public",
    ("POST", "/m/{code}"): "public",
    ("GET", "/staff"): "staff",
    ("GET", "/staff/board/live"): "staff",
    ("GET", "/staff/schools"): "staff",
    ("POST", "/staff/schools"): "operator",
    ("GET", "/staff/schools/{code}"): "staff",
    ("POST", "/staff/schools/{code}/kits"): "operator",
    ("GET", "/staff/schools/{code}/missing"): "staff",
    ("GET", "/staff/plan"): "staff",
    ("POST", "/staff/plan"): "operator",
    ("POST", "/staff/plan/{slot_id}/delete"): "operator",
    ("POST", "/staff/rates"): "operator",
    ("GET", "/staff/makeup"): "staff",
    ("POST", "/staff/makeup/phases"): "operator",
    ("POST", "/staff/makeup/phases/{phase_id}/generate"): "operator",
    ("POST", "/staff/makeup/hours"): "operator",
    ("POST", "/staff/makeup/hours/{hours_id}/delete"): "operator",
    ("POST", "/staff/makeup/sessions"): "operator",
    ("POST", "/staff/makeup/sessions/{session_id}/delete"): "operator",
    ("GET", "/staff/makeup/sessions/{session_id}"): "staff",
    ("GET", "/staff/exports"): "exporter",
    ("POST", "/staff/exports"): "exporter",
    ("GET", "/staff/exports/{job_id}"): "exporter",
    ("GET", "/staff/exports/{job_id}/download"): "exporter",
    ("GET", "/staff/errata"): "staff",
    ("GET", "/staff/errata/{erratum_id}"): "staff",
    ("POST", "/staff/errata/{erratum_id}"): "operator",
    ("GET", "/staff/access-log"): "operator",
    ("GET", "/school"): "school",
    ("GET", "/school/roster"): "school",
    ("POST", "/school/roster"): "school",
    ("GET", "/school/jobs/{job_id}"): "school_a",
    ("GET", "/school/missing"): "school",
    ("GET", "/school/poster"): "school",
    ("GET", "/school/poster.png"): "school",
    ("GET", "/school/proof"): "school",
    ("POST", "/school/proof/{student_id}/mark"): "school_a",
    ("GET", "/school/errata"): "school",
    ("POST", "/school/errata"): "school",
    ("POST", "/school/errata/table"): "school",
}
ADMITS = {  # policy -> roles let through (school B is refused A's objects with 404, as if they did not exist)
    "public": set(ROLES), "login": set(ROLES) - {"anon"}, "staff": {"viewer", "operator", "exporter"},
    "operator": {"operator"}, "exporter": {"exporter"}, "school": {"school_a", "school_b"},
    "school_a": {"school_a"}, "photo": {"exporter", "school_a"},
}


def _routes(site) -> list[tuple[str, str, str | None]]:
    from centre.web import create_web_app
    from centre.web.security import routes

    return routes(create_web_app(site.server.centre))


def app_routes(site) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in _routes(site)]


def test_every_route_has_an_entry_and_declares_a_policy(site):
    routes = app_routes(site)
    assert len(routes) > 40
    assert set(routes) == set(EXPECTED), {"no entry in EXPECTED": sorted(set(routes) - set(EXPECTED)),
                                          "no such route": sorted(set(EXPECTED) - set(routes))}
    assert not [(m, p) for m, p, policy in _routes(site) if policy is None]


def _path(site, method: str, path: str) -> str:
    """The route with school A's sample objects (destructive POSTs aim at ids that do not exist)."""
    destroy = method == "POST" and path.endswith("/delete")
    values = {"lang": "en", "capture_id": next(iter(site.captures.values())), "code": site.a,
              "student_id": site.ids["student"], "erratum_id": site.ids["erratum"],
              "slot_id": 999999 if destroy else site.ids["slot"], "hours_id": 999999, "phase_id": site.ids["phase"],
              "session_id": 999999 if destroy else site.ids["session"],
              "job_id": site.ids["export_job"] if path.startswith("/staff/") else site.ids["job"]}
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


def _admitted(r, method: str) -> bool:
    if r.status_code in (401, 403):
        return False
    if r.status_code == 303 and r.headers.get("Location", "").startswith("/login?next="):
        return False
    return r.status_code in (200, 303, 400, 404)


@pytest.mark.parametrize("role", ROLES)
def test_role_by_route(site, role):
    client = site.client(role)
    routes = [r for r in app_routes(site) if r != ("POST", "/logout")] + [("POST", "/logout")]  # logout last
    wrong = []
    for method, path in routes:
        policy = EXPECTED[(method, path)]
        url = _path(site, method, path)
        r = client.get(url) if method == "GET" else client.post(url, {})
        allowed = role in ADMITS[policy]
        if policy in ("photo", "school_a") and role == "school_b":
            ok = r.status_code == 404  # another school's object: as absent as one that never existed
        elif allowed and method == "GET":  # the page itself (the sample export failed: nothing to download)
            want = 303 if path in ("/", "/lang/{lang}") else 404 if path.endswith("/download") else 200
            ok = r.status_code == want and _admitted(r, method)
        elif allowed:
            ok = _admitted(r, method)
        elif role == "anon":
            ok = (r.status_code == 303 and r.headers["Location"].startswith("/login?next=")) if method == "GET" \
                else r.status_code == 401
        else:
            ok = r.status_code == 403
        if not ok:
            wrong.append((method, url, policy, r.status_code))
    assert not wrong, wrong


def test_posts_without_the_csrf_token_are_refused(site):
    client = site.client("operator")
    for method, path in app_routes(site):
        if method != "POST" or EXPECTED[(method, path)] not in ("operator", "public", "login"):
            continue
        r = client.post(_path(site, method, path), {}, csrf=False)
        assert r.status_code == 403, (path, r.status_code)
        bad = client.post(_path(site, method, path), {"csrf": "forged"}, csrf=False)
        assert bad.status_code == 403, (path, bad.status_code)


def test_school_b_never_sees_school_a(site):
    """Every school page and every download URL, with A's ids, as B's contact: refused, and no A name shows."""
    b = site.client("school_b")
    a_names = [s["name"] for s in site.a_students] + [site.a_students[0]["student_no"]]
    urls = [_path(site, m, p) for m, p in app_routes(site) if m == "GET" and (p.startswith(("/school", "/photos")))]
    urls += [f"/school/proof?school={site.a}&class=计算机1班", f"/school/proof?school={site.a_site}&class=珠海1班",
             f"/photos/{site.b_capture}.jpg"]
    for cid in site.captures.values():
        urls += [f"/photos/{cid}.jpg", f"/photos/{cid}/thumb.jpg"]
    seen = {}
    for url in urls:
        r = b.get(url)
        seen[url] = r.status_code
        leaked = [n for n in a_names if n in r.text]
        assert not leaked, (url, leaked)
        if any(k in url for k in ("/photos/", "/jobs/", "proof?school=1")) and site.b_capture not in url:
            assert r.status_code == 404, (url, r.status_code)
    assert seen[f"/photos/{site.b_capture}.jpg"] == 200  # B's own student's photo: B may proof-read it
    for url in (f"/school/proof/{site.ids['student']}/mark",):
        assert b.post(url, {"kind": "photo_damaged"}).status_code == 404
    r = b.post("/school/errata", {"student": site.a_students[0]["student_no"], "field": "name", "wrong": "x",
                                  "right": "y"})
    assert r.status_code == 400 and "err-student" in r.text  # A's student number is no student of B's
    table = "学号,字段,错误内容,正确内容\n" + f"{site.a_students[1]['student_no']},name,x,y\n"
    r = b.post("/school/errata/table", files={"file": ("e.csv", table.encode())})
    assert r.status_code == 400 and "errata-problems" in r.text
    from sqlalchemy import func, select

    from centre.db import errata, schools

    with site.server.centre.engine.connect() as conn:
        b_errata = conn.execute(select(func.count()).select_from(errata).join(schools, schools.c.id ==
                                                                              errata.c.school_id)
                                .where(schools.c.code == site.b)).scalar()
    assert b_errata == 0
