"""A centre for the web tests: a real ``capturekit centre serve`` on loopback with a make-up signing key, cheap
roster keys for schools added on the pages, accounts for every role, and a requests-based browser stand-in.

::

    centre = web_centre(tmp_path, keys_dir)       # started; centre.makeup_key is the signing key
    s = Client(centre.url); s.login("staff-op", PASSWORD)
    s.get("/staff"); s.post("/staff/plan", data={...})   # the CSRF token of the page is added by itself
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import requests
from peers.centre import CentreServer, _toml

from appliance import idnumber

PASSWORD = "correct horse battery"
SHOTS = Path(__file__).resolve().parent / "screenshots"  # every browser test's screenshots (a few go to docs/img)
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
ROLES = ("anon", "viewer", "operator", "exporter", "school_a", "school_b")
USERS = {"viewer": "staff-viewer", "operator": "staff-op", "exporter": "staff-exp", "school_a": "contact-a",
         "school_b": "contact-b"}
CHEAP = {"new_school_argon2_opslimit": 1, "new_school_argon2_memlimit_kib": 8}


def web_centre(root: Path, keys_dir: Path, database_url: str = "", storage_url: str = "", s3: Any = None,
               **settings: Any) -> CentreServer:
    """A centre (not yet started) configured for the web tests."""
    from centre.makeup_qr import generate_key, save_signing_key

    server = CentreServer(root, keys_dir=keys_dir, database_url=database_url, storage_url=storage_url, s3=s3)
    key = generate_key()
    path = root / f"makeup-{secrets.token_hex(3)}.key"
    save_signing_key(key, path)
    server.makeup_key = key  # type: ignore[attr-defined]
    server.settings.update({"makeup_signing_key": str(path), **CHEAP, **settings})
    server.config_path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in server.settings.items()))
    return server


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


class Client:
    """A session on the centre's pages (requests; cookies kept), filling in the page's CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.s = requests.Session()
        self.token = ""

    def get(self, path: str, **kw: Any) -> requests.Response:
        r = self.s.get(self.base + path, timeout=30, allow_redirects=kw.pop("allow_redirects", False), **kw)
        if "name=\"csrf\"" in r.text:
            self.token = csrf_of(r.text)
        return r

    def post(self, path: str, data: dict | None = None, files: dict | None = None, csrf: bool = True,
             **kw: Any) -> requests.Response:
        if csrf and not self.token:
            self.get("/login")
        body = {**({"csrf": self.token} if csrf else {}), **(data or {})}
        r = self.s.post(self.base + path, data=body, files=files, timeout=60,
                        allow_redirects=kw.pop("allow_redirects", False), **kw)
        if "name=\"csrf\"" in r.text:
            self.token = csrf_of(r.text)
        return r

    def login(self, username: str, password: str = PASSWORD) -> requests.Response:
        self.get("/login")
        r = self.post("/login", {"username": username, "password": password})
        assert r.status_code == 303, (r.status_code, r.text[:500])
        self.get(r.headers["Location"])  # the session's own CSRF token from here on
        return r


def shot(page: Any, name: str, docs: bool = False, full: bool = True) -> Path:
    """Save a screenshot of the page (and a copy in docs/img when ``docs``)."""
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    if docs:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")
    return path


def roster_rows(prefix: str, n: int, school: str = "", classes: tuple[str, ...] = ("计算机1班", "计算机2班"),
                region: str = "440305") -> list[dict]:
    out = []
    for i in range(n):
        out.append({"id_number": idnumber.make(f"{region}2003{(i % 12) + 1:02d}{(i % 28) + 1:02d}{i:03d}"),
                    "name": f"{prefix}{i:03d}", "class": classes[i % len(classes)], "student_no": f"{prefix}-{i:04d}",
                    "school": school})
    return out


def write_roster(path: Path, rows: list[dict]) -> Path:
    cols = ["id_number", "name", "class", "student_no", "school"]
    path.write_text(",".join(cols) + "\n" + "".join(",".join(r[c] for c in cols) + "\n" for r in rows),
                    encoding="utf-8")
    return path
