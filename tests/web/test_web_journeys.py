"""Each role's main journey in a real headless Chromium against a real centre on loopback (screenshots in
tests/web/screenshots/, a few copied to docs/img/ for docs/centre.md).

- staff plan a shoot and watch a simulated classroom arrive on the live board through the real sync daemon;
- a school uploads a roster with one bad line, then a good one, proof-reads the photos and files errata;
- a student registers for a make-up session and gets a QR code that a simulated kit accepts and shoots.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import json
import secrets
import time

import zxingcpp
from centrekit import Tus, make_bundle
from PIL import Image
from sqlalchemy import func, select
from webpeer import PASSWORD, roster_rows, shot, write_roster

from appliance.bundle import read_header
from appliance.simulate import Classroom, run, sim_config


def login(page, site, username: str) -> None:
    page.goto(f"{site.url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:2000]


def staff_user(site, roles=("viewer", "operator", "exporter")) -> str:
    from centre.accounts import add_user

    name = f"staff{secrets.token_hex(3)}"
    add_user(site.server.centre.engine, name, PASSWORD, kind="staff", roles=list(roles), display_name="李老师")
    return name


def shot_cell(page, code: str) -> int:
    return int(page.locator(f"tr[data-school='{code}'] td[data-shot]").get_attribute("data-shot"))


def distinct_students_shot(site, kit: str) -> int:
    from centre.db import captures, kits

    with site.server.centre.engine.connect() as conn:
        return conn.execute(select(func.count(func.distinct(captures.c.identity_key)))
                            .join(kits, kits.c.id == captures.c.kit_id)
                            .where(kits.c.name == kit, captures.c.kind == "capture")).scalar_one()


def test_staff_plan_a_shoot_and_watch_the_classroom_arrive(sqlite_site, page, kit_config, tmp_path):
    site = sqlite_site
    from appliance.simulate import SCHOOL
    from centre.rosters import load_roster
    from sync.daemon import SyncDaemon

    user = staff_user(site)
    kit = f"kit{secrets.token_hex(3)}"
    token = site.server.add_kit(kit)
    roster = tmp_path / "class.csv"  # the school's file for the classroom the kit shoots (appliance.simulate)
    cfg = sim_config(dataclasses.replace(kit_config, kit_id=kit), kit_config.data_path, (640, 480))
    summary = run(cfg, 30, seed=7, qc="sim", sources=False, school_csv=roster)  # the real capture daemon;
    assert not summary["mismatches"] and summary["shots_captured"] >= 20  # its bundles wait in the kit's outbox

    login(page, site, user)
    page.goto(f"{site.url}/staff/schools")
    page.fill("#code", SCHOOL)
    page.fill("#name", "模拟大学")
    page.click("#school-form button")
    page.wait_for_load_state()
    assert page.url.endswith(f"/staff/schools/{SCHOOL}"), page.inner_text("main")
    load_roster(site.server.centre.engine, SCHOOL, roster)  # the school's contact would upload it
    page.reload()
    page.select_option("#kit", kit)
    page.click(f"form[action='/staff/schools/{SCHOOL}/kits'] button")
    page.wait_for_url(f"**/staff/schools/{SCHOOL}")
    assert kit in page.inner_text("main")

    page.goto(f"{site.url}/staff/plan?school={SCHOOL}")
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    for when, minutes in ((f"{tomorrow}T09:00", "60"), (f"{tomorrow}T09:30", "10")):
        page.fill("#school", SCHOOL)
        page.select_option("#group_kind", "class")
        page.fill("#group_name", "class-1")
        page.fill("#starts_at", when)
        page.fill("#minutes", minutes)
        page.select_option("#kit", kit)
        page.select_option("#rate_code", "full_time")
        page.fill("#place", "教学楼 A101")
        page.click("#plan-form button")
        page.wait_for_url("**/staff/plan?school=*")
    rows = page.locator("#slots tbody tr")
    assert rows.count() == 2
    first, second = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert "\t30\t" in first and "设备时间冲突" in first  # 30 students fit 100–150/h; the kit is also at 9:30
    assert "超额" in second  # 30 students in 10 minutes: more than 150/h allows
    shot(page, "staff-plan", docs=True)

    page.goto(f"{site.url}/staff?q={SCHOOL}")
    assert shot_cell(page, SCHOOL) == 0
    page.evaluate("window.notReloaded = true")

    s = dataclasses.replace(cfg.sync, centre_url=site.url, token=token, rescan_s=3600, heartbeat_s=3600,
                            roster_s=3600, backoff_initial_s=0.05, backoff_max_s=0.5)
    daemon = SyncDaemon(dataclasses.replace(cfg, sync=s))
    daemon.start()
    try:
        daemon.scan()
        total = len(daemon._pending)
        seen = []
        for batch_end in (total // 2, total):  # half the backlog, then the rest: the board follows each
            while daemon.uploaded < batch_end:
                daemon.step()
            while daemon._inflight:  # those still in flight land now, not behind the board's back; none started
                daemon.upload(launch=False)
            site.server.opened()
            want = distinct_students_shot(site, kit)
            deadline = time.monotonic() + 20
            while shot_cell(page, SCHOOL) != want and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            assert shot_cell(page, SCHOOL) == want, (shot_cell(page, SCHOOL), want)
            seen.append(want)
            if len(seen) == 1:
                shot(page, "staff-board-half")
        assert 0 < seen[0] < seen[1]
        daemon._contact(daemon.heartbeat, "heartbeat")  # the next heartbeat: the kit's backlog is empty
        deadline = time.monotonic() + 20
        while page.locator(f"#kits tr[data-kit='{kit}'] td").nth(2).inner_text() != "0":
            assert time.monotonic() < deadline, page.locator(f"#kits tr[data-kit='{kit}']").inner_text()
            page.wait_for_timeout(250)
    finally:
        daemon.close()
    assert page.evaluate("window.notReloaded") is True  # the tables were refreshed in place (refresh.js)
    kit_row = page.locator(f"#kits tr[data-kit='{kit}']").inner_text()
    assert "—" not in kit_row.split("\t")[1]  # last seen: the sync daemon's heartbeat reached the board
    shot(page, "staff-board", docs=True)

    page.click(f"tr[data-school='{SCHOOL}'] a:has-text('{SCHOOL}')")
    page.wait_for_url(f"**/staff/schools/{SCHOOL}")
    assert page.locator("#classes tbody tr").count() >= 1
    page.goto(f"{site.url}/staff/schools/{SCHOOL}/missing")
    missing = page.locator("#missing tbody tr").count()
    assert missing == 30 - seen[1] or (30 - seen[1] == 0 and missing == 1)


def test_school_uploads_roster_proofreads_and_files_errata(sqlite_site, page, tmp_path):
    site = sqlite_site
    from centre.accounts import add_user
    from centre.rosters import add_school

    code = f"3{secrets.randbelow(10**4):04d}"
    engine = site.server.centre.engine
    add_school(engine, code, "测试学院", opslimit=1, memlimit=8192)
    contact = f"contact{code}"
    add_user(engine, contact, PASSWORD, kind="school", school=code, display_name="王老师")
    rows = roster_rows("丙", 6, region="320102")
    good = write_roster(tmp_path / "good.csv", rows)
    text = good.read_text(encoding="utf-8").splitlines()
    text[3] = text[3].replace(rows[2]["id_number"], rows[2]["id_number"][:-1] + ("0" if rows[2]["id_number"][-1]
                                                                                   != "0" else "1"))
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(text) + "\n", encoding="utf-8")

    login(page, site, contact)
    page.goto(f"{site.url}/school/roster")
    page.set_input_files("#file", str(bad))
    page.click("form[action='/school/roster'] button")
    problems = page.locator("#roster-problems li")
    assert problems.count() == 1 and "第 4 行" in problems.inner_text()  # the line with the wrong check digit
    shot(page, "school-roster-refused", docs=True)
    page.goto(f"{site.url}/school")
    assert "还没有名单" in page.inner_text("main")  # nothing was half-applied

    page.goto(f"{site.url}/school/roster")
    page.set_input_files("#file", str(good))
    page.click("form[action='/school/roster'] button")
    page.wait_for_selector("#job[data-status='done']", timeout=30_000)  # the job page refreshes itself
    assert "已导入 6 名学生" in page.inner_text("#roster-result")

    kit = f"kit{secrets.token_hex(3)}"
    tus = Tus(site.url, site.server.add_kit(kit))
    for n, st in enumerate(rows[:4], start=1):
        tus.upload(make_bundle(site.server.sealing_line, kit, n, key=st["id_number"], journal="p1"))
    site.server.opened()
    page.goto(f"{site.url}/school")
    assert page.inner_text("#shot-total") == "4"

    page.goto(f"{site.url}/school/proof")
    page.click("nav.classes a:has-text('计算机1班')")
    page.wait_for_selector("#photos")
    imgs = page.locator("#photos img")
    assert imgs.count() == 2  # 计算机1班: rows 0, 2, 4 — the first two photographed, row 4 not yet
    page.wait_for_function("Array.from(document.querySelectorAll('#photos img')).every(i => i.naturalWidth > 0)")
    assert page.locator("#photos .nophoto").count() == 1
    shot(page, "school-proof", docs=True)
    card = page.locator("li.photo").first
    card.locator("select").select_option("photo_damaged")
    card.locator("input[name=note]").fill("左侧有划痕")
    card.locator("button").click()
    page.wait_for_load_state()

    page.goto(f"{site.url}/school/errata")
    page.fill("#student", rows[1]["student_no"])
    page.select_option("#field", "name")
    page.fill("#wrong", rows[1]["name"])
    page.fill("#right", "丙零零一")
    page.click("#erratum-form button")
    page.wait_for_selector("#filed")
    table = tmp_path / "errata.csv"
    table.write_text(f"学号,字段,错误内容,正确内容\n{rows[3]['student_no']},班级,计算机2班,计算机3班\n"
                     f"NOBODY,姓名,x,y\n", encoding="utf-8")
    page.set_input_files("form[action='/school/errata/table'] input[type=file]", str(table))
    page.click("form[action='/school/errata/table'] button")
    assert page.locator("#errata-problems li").count() == 1  # the unknown student; the good line is not filed
    assert "第 3 行" in page.inner_text("#errata-problems")
    page.goto(f"{site.url}/school/errata")
    listed = page.inner_text("#errata")
    assert "照片损坏" in listed and "丙零零一" in listed and "计算机3班" not in listed
    shot(page, "school-errata", docs=True)

    staff = page.context.browser.new_context()
    spage = staff.new_page()
    login(spage, site, staff_user(site, ("viewer", "operator")))
    spage.goto(f"{site.url}/staff/errata?status=new")
    queue = spage.inner_text("#errata")
    assert code in queue and "丙零零一" in queue and "照片损坏" in queue
    spage.click("#errata tr:has-text('丙零零一') a")
    spage.select_option("#status", "sent_to_bureau")
    spage.fill("#staff_note", "已转冲印")
    spage.click("form[action^='/staff/errata/'] button")
    spage.wait_for_load_state()
    assert "已转冲印机构" in spage.inner_text("main")
    staff.close()
    page.goto(f"{site.url}/school/errata")
    assert "已转冲印机构" in page.inner_text("#errata")  # the school sees the status; nothing was emailed


class MakeupKit(Classroom):
    """A kit whose camera reads make-up codes signed by this centre (its public key from GET /api/v1/keys)."""

    def __init__(self, cfg, public_key: str, scope: str) -> None:
        self._public, self._scope = public_key, scope
        super().__init__(cfg, sources=True)

    def _add_sources(self, cfg, readers):
        from appliance.factory import makeup_verifier
        from appliance.readers.qr import CameraQrReader

        cfg = dataclasses.replace(cfg, school=self._scope, makeup_qr=dataclasses.replace(
            cfg.makeup_qr, public_keys=(self._public,)))
        self.qr = CameraQrReader(makeup_verifier(cfg), name="kit-camera", absent_frames=3)
        readers.append(self.qr)
        return cfg


def test_student_registers_and_a_kit_accepts_the_code(sqlite_site, page, browser, kit_config):
    site = sqlite_site
    from appliance.identity import Source
    from appliance.roster import install_protected
    from appliance.session import Led
    from centre.accounts import add_user
    from centre.makeup import add_session
    from centre.rosters import add_school, assign, load_roster

    code = f"4{secrets.randbelow(10**4):04d}"
    engine = site.server.centre.engine
    add_school(engine, code, "补拍学院", opslimit=1, memlimit=8192)
    rows = roster_rows("丁", 5, region="310104")
    load_roster(engine, code, write_roster(kit_config.data_path.parent / "d.csv", rows))
    add_user(engine, f"contact{code}", PASSWORD, kind="school", school=code)
    day = dt.date.today() + dt.timedelta(days=(5 - dt.date.today().weekday()) % 7 or 7)  # the next Saturday
    add_session(engine, day, "08:30", "11:30", "图书馆一楼", 30)
    add_session(engine, day, "14:30", "17:30", "图书馆一楼", 30)

    login(page, site, f"contact{code}")
    page.goto(f"{site.url}/school/poster")
    page.wait_for_function("document.getElementById('poster-qr').naturalWidth > 0")
    shot(page, "school-poster")
    poster = page.request.get(f"{site.url}/school/poster.png").body()
    form_url = zxingcpp.read_barcodes(Image.open(io.BytesIO(poster)))[0].text  # what a phone's camera reads
    assert form_url.endswith(f"/m/{code}")

    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                has_touch=True, locale="zh-CN")
    student = phone.new_page()
    student.goto(form_url)
    student.fill("#key", rows[2]["id_number"])
    student.fill("#second", "not my number")  # the right ID number, a wrong student number
    student.check("input[name=session] >> nth=0")
    student.click("#makeup-form button")
    assert student.locator("#no-match").count() == 1 and student.locator("#makeup-qr").count() == 0
    student.goto(form_url)
    student.fill("#key", rows[2]["id_number"])
    student.fill("#second", rows[2]["student_no"])
    shot(student, "student-form", docs=True)
    student.check("input[name=session] >> nth=1")
    student.click("#makeup-form button")
    student.wait_for_selector("#makeup-qr")
    shot(student, "student-code", docs=True)
    src = student.get_attribute("#makeup-qr", "src")
    png = base64.b64decode(src.split(",", 1)[1])
    text = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))[0].text
    assert text.startswith("CKM1:")
    phone.close()

    kit = f"kit{secrets.token_hex(3)}"
    token = site.server.add_kit(kit)
    assign(engine, kit, code)
    tus = Tus(site.url, token)
    keys = tus.s.get(f"{site.url}/api/v1/keys", timeout=10).json()
    public = keys["makeup_public_keys"][0]  # how kits learn the centre's make-up key
    doc = tus.s.get(f"{site.url}/api/v1/roster", timeout=10).json()
    cfg = dataclasses.replace(kit_config, kit_id=kit)
    cfg.roster_path.unlink()
    install_protected(doc, cfg.roster_path)
    room = MakeupKit(cfg, public, code)
    room.start()
    try:
        picture = Image.open(io.BytesIO(png)).convert("RGB")
        picture = picture.resize((picture.width * 2 // 3, picture.height * 2 // 3), Image.NEAREST)
        room.camera.show(picture)  # the phone held up to the kit's camera
        for _ in range(10):
            room.wait(0.4)
            if room.led in (Led.READY, Led.WARN, Led.REJECT):
                break
        assert room.led is Led.READY, room.led
        room.wait(3)
        room.press()
        assert room.led is Led.OK
    finally:
        room.close()
    outbox = cfg.data_path / "spool" / "outbox"
    bundles = sorted(outbox.glob("*.bundle"))
    assert len(bundles) == 1
    data = bundles[0].read_bytes()
    header, offset = read_header(io.BytesIO(data))
    r = tus.create(len(data) - offset, {"capture_id": header.capture_id, "sha256": header.sealed_sha256,
                                        "header": json.dumps(header.to_dict())})
    r = tus.patch(tus.url(r), 0, data[offset:])
    assert r.headers["Capturekit-Status"] == "received"
    site.server.opened()

    from centre.db import captures

    with engine.connect() as conn:
        cap = conn.execute(select(captures).where(captures.c.capture_id == header.capture_id)).first()
    assert cap.identity_key == rows[2]["id_number"] and cap.identity_source == Source.MAKEUP_QR.value
    page.goto(f"{site.url}/school/missing")
    missing = page.inner_text("#missing")
    assert rows[2]["name"] not in missing and rows[3]["name"] in missing  # the make-up student is shot
    shot(page, "school-missing")

