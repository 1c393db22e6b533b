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


# ---- a file that would silently lose students is refused, and the old roster is kept
@pytest.fixture
def loaded(tmp_path):
    db = tmp_path / "roster.sqlite"
    load_csv(write(tmp_path, "id_number\n" + "".join(f"{n}\n" for n in STUDENTS)), db)
    return db


@pytest.mark.parametrize(("text", "match"), [
    ("id_number,name\n", "holds no students; the loaded roster \\(20 students\\) is kept"),
    (f'id_number,name\n{STUDENTS[0]},"Zhang\n{STUDENTS[1]},Li\n{STUDENTS[2]},Wang\n', "quote left open"),
    (f"id_number,身份证号\n{STUDENTS[0]},{STUDENTS[1]}\n", "column id_number is given twice"),
    (f"id_number,name\n{STUDENTS[0]},a,extra\n", "3 cells, the header has 2"),
])
def test_files_that_would_lose_students_are_refused(tmp_path, loaded, text, match):
    with pytest.raises(RosterError, match=match):
        load_csv(write(tmp_path, text), loaded)
    assert Roster(loaded).count() == 20  # the old roster is untouched


def test_an_empty_roster_only_with_allow_empty(tmp_path, loaded):
    assert load_csv(write(tmp_path, "id_number,name\n"), loaded, allow_empty=True).rows == 0
    assert Roster(loaded).count() == 0


def test_unknown_encoding_and_missing_file_are_clear_errors(tmp_path, loaded):
    with pytest.raises(RosterError, match="unknown encoding 'latin-9x'"):
        load_csv(write(tmp_path, f"id_number\n{STUDENTS[0]}\n"), loaded, encoding="latin-9x")
    with pytest.raises(RosterError, match="no such roster file"):
        load_csv(tmp_path / "absent.csv", loaded)
    with pytest.raises(RosterError, match="not utf-8 text"):
        load_csv(write(tmp_path, "身份证号\n", "gb18030"), loaded, encoding="utf-8")


def test_two_concurrent_loads_cannot_interleave(tmp_path, loaded):
    from appliance.datadir import ROSTER_LOCK, Lock
    from appliance.errors import DataDirBusy

    held = Lock(loaded.parent / ROSTER_LOCK).acquire("roster load")  # another load is in progress
    try:
        with pytest.raises(DataDirBusy, match="in use"):
            load_csv(write(tmp_path, f"id_number\n{STUDENTS[0]}\n"), loaded)
    finally:
        held.release()
    assert Roster(loaded).count() == 20


def test_a_2_gb_single_line_file_is_refused_with_its_line_in_bounded_memory(tmp_path):
    import subprocess
    import sys

    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:
        fh.write(f"id_number\n{STUDENTS[0]}\n".encode())
        fh.truncate(2 * 1024**3)  # sparse: 2 GB of NULs with no newline after line 2
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "kit.toml").write_text(f'data_dir = "{data}"\n')
    code = ("import resource, sys; from appliance.cli import main; rc = main(sys.argv[1:]);"
            " print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, "--config", str(tmp_path / "kit.toml"), "roster", "load",
                          str(big)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "line 3 is longer than" in out.stderr and "Traceback" not in out.stderr
    peak_mb = int(out.stdout.split("MAXRSS")[1]) / 1024
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"  # the limit; the interpreter alone is most of it
