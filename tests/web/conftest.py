"""The web tests' fixtures: one real centre on SQLite + a directory for the session, with two schools (A with a
joint-programme site, B), rosters, a kit, real sealed captures of some of A's students, and an account of every
role; and one headless Chromium (Debian's ``chromium``, driven by Playwright, which downloads no browser)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "centre"))  # centrekit: sealed bundles, tus

from centrekit import Tus, make_bundle
from peers.centre import CentreServer
from webpeer import PASSWORD, SHOTS, USERS, Client, roster_rows, web_centre, write_roster

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """Give the name ``conftest`` back to tests/conftest.py once this file is loaded (see tests/centre/conftest.py)."""
    if plugin is not sys.modules[__name__]:
        return
    root = Path(__file__).resolve().parents[1] / "conftest.py"
    for other in manager.get_plugins():
        if getattr(other, "__file__", None) and Path(other.__file__).resolve() == root:
            sys.modules["conftest"] = other


@dataclass
class Site:
    """What the session's centre holds, by name, for the tests to aim at."""

    server: CentreServer
    a: str = "10001"
    a_site: str = "10001-zh"
    b: str = "20002"
    kit: str = ""
    token: str = ""
    a_students: list[dict] = field(default_factory=list)  # id_number, name, class, student_no
    b_students: list[dict] = field(default_factory=list)
    captures: dict[str, str] = field(default_factory=dict)  # A student's id number -> capture id
    b_capture: str = ""
    ids: dict[str, int] = field(default_factory=dict)  # sample object ids of school A (student, job, erratum, ...)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, role: str) -> Client:
        c = Client(self.url)
        if role != "anon":
            c.login(USERS[role], PASSWORD)
        return c


@pytest.fixture(scope="session")
def sqlite_site(tmp_path_factory: pytest.TempPathFactory, centre_keys: Path) -> Iterator[Site]:
    """The session's centre on SQLite + a directory (the browser journeys use this one)."""
    yield from _site(web_centre(tmp_path_factory.mktemp("web-centre"), centre_keys))


@pytest.fixture(scope="session")
def pg_s3_site(tmp_path_factory: pytest.TempPathFactory, centre_keys: Path) -> Iterator[Site]:
    """The same centre on PostgreSQL (Debian's server, tests/peers/postgres.py) + S3 (moto on loopback)."""
    from peers.postgres import Postgres, bin_dir
    from peers.s3 import S3

    if bin_dir() is None:
        pytest.fail("PostgreSQL server binaries missing: apt-get install postgresql")
    pg, s3 = Postgres().start(), S3().start()
    try:
        name = f"ckweb_{secrets.token_hex(3)}"
        bucket = s3.bucket(name.replace("_", "-"))
        yield from _site(web_centre(tmp_path_factory.mktemp("web-centre-pg"), centre_keys,
                                    database_url=pg.create_database(name), storage_url=f"s3://{bucket}/centre",
                                    s3=s3))
    finally:
        s3.stop()
        pg.stop()


@pytest.fixture(scope="session", params=["sqlite", "pg_s3"])
def site(request: pytest.FixtureRequest) -> Site:
    """The access and page tests run on both backends."""
    return request.getfixturevalue(f"{request.param}_site")


def _site(server: CentreServer) -> Iterator[Site]:
    from centre.accounts import add_user
    from centre.rosters import add_school, assign, load_roster

    root = server.root
    with server:
        engine = server.centre.engine
        s = Site(server)
        add_school(engine, s.a, "示范大学", opslimit=1, memlimit=8192)
        add_school(engine, s.a_site, "示范大学珠海校区", parent=s.a)
        add_school(engine, s.b, "Other University", opslimit=1, memlimit=8192)
        s.a_students = roster_rows("甲", 8) + roster_rows("甲站", 2, s.a_site, ("珠海1班",), region="440402")
        s.b_students = roster_rows("乙", 4, region="110105")
        load_roster(engine, s.a, write_roster(root / "a.csv", s.a_students))
        load_roster(engine, s.b, write_roster(root / "b.csv", s.b_students))
        for role, name in USERS.items():
            if role.startswith("school"):
                add_user(engine, name, PASSWORD, kind="school", school=s.a if role == "school_a" else s.b)
            else:
                add_user(engine, name, PASSWORD, kind="staff", roles=[role])
        s.kit = f"kit{secrets.token_hex(3)}"
        s.token = server.add_kit(s.kit)
        assign(engine, s.kit, s.a)
        tus = Tus(server.url, s.token)
        for shot, st in enumerate(s.a_students[:5], start=1):  # five of A's students photographed
            b = make_bundle(server.sealing_line, s.kit, shot, key=st["id_number"], journal="j1")
            tus.upload(b)
            s.captures[st["id_number"]] = b.capture_id
        b = make_bundle(server.sealing_line, s.kit, 50, key=s.b_students[0]["id_number"], journal="j1")
        tus.upload(b)
        s.b_capture = b.capture_id
        server.opened()
        _sample_ids(s)
        yield s


def _sample_ids(s: Site) -> None:
    """Ids of school A's objects that the access tests aim at: a student, a roster job, an erratum, a slot, ..."""
    from sqlalchemy import select

    from centre.db import makeup_hours, students, web_jobs
    from centre.errata import file_one, student_in
    from centre.makeup import add_phase, add_session
    from centre.plans import add_slot
    from centre.rosters import subtree

    engine = s.server.centre.engine
    with engine.begin() as conn:
        a_id = conn.execute(select(students.c.school_id).where(students.c.name == s.a_students[0]["name"])).scalar()
        s.ids["student"] = conn.execute(select(students.c.id).where(students.c.name == s.a_students[0]["name"])
                                        ).scalar()
        family = subtree(conn, a_id)
        s.ids["job"] = conn.execute(web_jobs.insert().values(
            kind="roster", school_id=a_id, user_id=1, status="done", total=1, done=1, result="{}", error="",
            created_at=_now(), updated_at=_now())).inserted_primary_key[0]
        s.ids["export_job"] = conn.execute(web_jobs.insert().values(
            kind="export", school_id=a_id, user_id=1, status="failed", total=0, done=0, result="{}", error="x",
            created_at=_now(), updated_at=_now())).inserted_primary_key[0]
        student = student_in(conn, family, s.ids["student"])
        s.ids["hours"] = conn.execute(select(makeup_hours.c.id)).scalars().first()
    s.ids["erratum"] = file_one(engine, 1, student, "data", "name", "甲000", "甲零零零")
    s.ids["slot"] = add_slot(engine, school=s.a, group_kind="class", group_name="计算机1班",
                             starts_at=_now().replace(hour=9, minute=0, second=0, microsecond=0), minutes=60,
                             kit=s.kit, rate_code="full_time")
    import datetime as dt

    s.ids["phase"] = add_phase(engine, "test phase", dt.date(2031, 9, 1), dt.date(2031, 9, 7))
    s.ids["session"] = add_session(engine, dt.date(2031, 9, 6), "08:30", "11:30", "Room 1", 50)


def _now():
    from centre.db import utcnow

    return utcnow()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session (Debian's package; Playwright must not fetch a browser)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (the web tests drive Debian's browser)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh browser context (its own cookies) at phone-ish width by default."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 900}, locale="zh-CN")  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    ctx.close()


@pytest.fixture(autouse=True)
def fresh_throttle(request: pytest.FixtureRequest) -> None:
    """Every test starts with empty rate-limit buckets (they all come from 127.0.0.1)."""
    name = next((n for n in ("site", "sqlite_site") if n in request.fixturenames), None)
    if name is None:
        return
    from sqlalchemy import delete

    from centre.db import throttle

    with request.getfixturevalue(name).server.centre.engine.begin() as conn:
        conn.execute(delete(throttle))
