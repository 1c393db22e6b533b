"""Roster CSV loading (validation, encodings, atomic replace) and the identity check against it."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import STUDENTS

from appliance import idnumber
from appliance.identity import Kind, Source, make
from appliance.roster import Roster, RosterError, load_csv


def write(tmp_path, text, encoding="utf-8"):
    p = tmp_path / "r.csv"
    p.write_bytes(text.encode(encoding))
    return p


def test_load_and_lookup_by_every_key_kind(tmp_path):
    csv = write(tmp_path, "id_number,collection_code,card_uid,name,class\n"
                          f"{STUDENTS[0]},,,张三,3A\n,Ab+/c0DE==,,,3B\n,,04a1b2c3,李四,3C\n")
    report = load_csv(csv, tmp_path / "roster.sqlite")
    assert report.rows == 3 and report.keys == {"id_number": 1, "collection_code": 1, "card_uid": 1}
    r = Roster(tmp_path / "roster.sqlite")
    assert r.lookup(make(Kind.ID_NUMBER, STUDENTS[0], Source.SIM)).label() == "张三 3A"
    assert r.lookup(make(Kind.COLLECTION_CODE, "Ab+/c0DE==", Source.QR_SCANNER)) is not None
    assert r.lookup(make(Kind.COLLECTION_CODE, "ab+/c0de==", Source.QR_SCANNER)) is None  # exact, case-sensitive
    assert r.lookup(make(Kind.CARD_UID, "04:A1:B2:C3", Source.PCSC)) is not None
    assert r.lookup(make(Kind.ID_NUMBER, STUDENTS[1], Source.SIM)) is None


def test_chinese_headers_and_gb18030_from_excel(tmp_path):
    csv = write(tmp_path, f"身份证号,姓名,班级\n{STUDENTS[0]},王五,计算机1班\n", "gb18030")
    report = load_csv(csv, tmp_path / "roster.sqlite")
    assert report.encoding == "gb18030" and report.rows == 1
    assert Roster(tmp_path / "roster.sqlite").lookup(make(Kind.ID_NUMBER, STUDENTS[0], Source.SIM)).name == "王五"


def test_bad_rows_are_listed_by_line_and_nothing_is_loaded(tmp_path):
    bad = STUDENTS[1][:-1] + ("0" if STUDENTS[1][-1] != "0" else "1")
    csv = write(tmp_path, f"id_number,name\n{STUDENTS[0]},a\n{bad},b\n,c\n{STUDENTS[0]},d\n")
    with pytest.raises(RosterError) as exc:
        load_csv(csv, tmp_path / "roster.sqlite")
    lines = dict(exc.value.problems)
    assert "check_digit" in lines[3] and "no identity key" in lines[4] and "repeats line 2" in lines[5]
    assert not (tmp_path / "roster.sqlite").exists()
    report = load_csv(csv, tmp_path / "roster.sqlite", skip_bad=True)
    assert report.rows == 1 and len(report.skipped) == 3


def test_unknown_column_is_an_error(tmp_path):
    with pytest.raises(RosterError, match="unknown roster columns"):
        load_csv(write(tmp_path, "id_number,phone\n"), tmp_path / "roster.sqlite")
    with pytest.raises(RosterError, match="no key column"):
        load_csv(write(tmp_path, "name,class\n"), tmp_path / "roster.sqlite")


def test_daemon_sees_a_replaced_roster_without_restart(tmp_path):
    db = tmp_path / "roster.sqlite"
    load_csv(write(tmp_path, f"id_number\n{STUDENTS[0]}\n"), db)
    r = Roster(db)
    new = make(Kind.ID_NUMBER, STUDENTS[1], Source.SIM)
    assert r.lookup(new) is None
    load_csv(write(tmp_path, f"id_number\n{STUDENTS[0]}\n{STUDENTS[1]}\n"), db)
    assert r.lookup(new) is not None and r.count() == 2


def test_hundred_thousand_rows_load_and_are_indexed(tmp_path):
    rows = [idnumber.make(f"{110000 + i // 1000:06d}20040101{i % 1000:03d}")
            for i in range(100_000)]
    csv = write(tmp_path, "id_number,class\n" + "".join(f"{n},c{i % 40}\n" for i, n in enumerate(rows)))
    report = load_csv(csv, tmp_path / "roster.sqlite")
    assert report.rows == len(rows) == 100_000
    plan = sqlite3.connect(tmp_path / "roster.sqlite").execute(
        "EXPLAIN QUERY PLAN SELECT * FROM students WHERE id_number = ?", [rows[0]]).fetchall()
    assert "USING INDEX" in plan[0][3]  # look-ups use the unique index, not a scan
    assert Roster(tmp_path / "roster.sqlite").lookup(make(Kind.ID_NUMBER, rows[-1], Source.SIM)) is not None
