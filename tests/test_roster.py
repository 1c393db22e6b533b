"""Roster CSV loading (validation, encodings, atomic replace) and the identity check against it."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import STUDENTS, cheap_key

from appliance import idnumber
from appliance.identity import Kind, Source, make
from appliance.roster import Roster, RosterError, load_csv


def write(tmp_path, text, encoding="utf-8"):
    p = tmp_path / "r.csv"
    p.write_bytes(text.encode(encoding))
    return p


def look(r: Roster, kind: Kind, key: str, source: Source = Source.SIM):
    """A tap as the daemon does it: protect with the roster's key, then look up."""
    return r.lookup(r.key().identity(make(kind, key, source)))


def test_load_and_lookup_by_every_key_kind(tmp_path):
    csv = write(tmp_path, "id_number,collection_code,card_uid,name,class\n"
                          f"{STUDENTS[0]},,,张三,3A\n,Ab+/c0DE==,,,3B\n,,04a1b2c3,李四,3C\n")
    report = load_csv(csv, tmp_path / "roster.sqlite", new_key=cheap_key())
    assert report.rows == 3 and report.keys == {"id_number": 1, "collection_code": 1, "card_uid": 1}
    assert report.dropped == ["class", "name"]
    r = Roster(tmp_path / "roster.sqlite")
    assert look(r, Kind.ID_NUMBER, STUDENTS[0]) is not None
    assert look(r, Kind.COLLECTION_CODE, "Ab+/c0DE==", Source.QR_SCANNER) is not None
    assert look(r, Kind.COLLECTION_CODE, "ab+/c0de==", Source.QR_SCANNER) is None  # exact, case-sensitive
    assert look(r, Kind.CARD_UID, "04:A1:B2:C3", Source.PCSC) is not None
    assert look(r, Kind.ID_NUMBER, STUDENTS[1]) is None
    raw = (tmp_path / "roster.sqlite").read_bytes()
    for clear in (STUDENTS[0], "Ab+/c0DE==", "04A1B2C3", "张三", "3A"):
        assert clear.encode() not in raw  # only protected forms rest on the kit


def test_chinese_headers_and_gb18030_from_excel(tmp_path):
    csv = write(tmp_path, f"身份证号,姓名,班级\n{STUDENTS[0]},王五,计算机1班\n", "gb18030")
    report = load_csv(csv, tmp_path / "roster.sqlite", new_key=cheap_key())
    assert report.encoding == "gb18030" and report.rows == 1
    assert look(Roster(tmp_path / "roster.sqlite"), Kind.ID_NUMBER, STUDENTS[0]) is not None


def test_bad_rows_are_listed_by_line_and_nothing_is_loaded(tmp_path):
    bad = STUDENTS[1][:-1] + ("0" if STUDENTS[1][-1] != "0" else "1")
    csv = write(tmp_path, f"id_number,name\n{STUDENTS[0]},a\n{bad},b\n,c\n{STUDENTS[0]},d\n")
    with pytest.raises(RosterError) as exc:
        load_csv(csv, tmp_path / "roster.sqlite", new_key=cheap_key())
    lines = dict(exc.value.problems)
    assert "check_digit" in lines[3] and "no identity key" in lines[4] and "repeats line 2" in lines[5]
    assert not (tmp_path / "roster.sqlite").exists()
    report = load_csv(csv, tmp_path / "roster.sqlite", skip_bad=True, new_key=cheap_key())
    assert report.rows == 1 and len(report.skipped) == 3


def test_unknown_column_is_an_error(tmp_path):
    with pytest.raises(RosterError, match="unknown roster columns"):
        load_csv(write(tmp_path, "id_number,phone\n"), tmp_path / "roster.sqlite")
    with pytest.raises(RosterError, match="no key column"):
        load_csv(write(tmp_path, "name,class\n"), tmp_path / "roster.sqlite")


def test_daemon_sees_a_replaced_roster_without_restart_and_the_key_is_kept(tmp_path):
    db = tmp_path / "roster.sqlite"
    load_csv(write(tmp_path, f"id_number\n{STUDENTS[0]}\n"), db, new_key=cheap_key())
    r = Roster(db)
    key = r.key()
    assert look(r, Kind.ID_NUMBER, STUDENTS[1]) is None
    load_csv(write(tmp_path, f"id_number\n{STUDENTS[0]}\n{STUDENTS[1]}\n"), db, new_key=cheap_key())
    assert look(r, Kind.ID_NUMBER, STUDENTS[1]) is not None and r.count() == 2
    assert r.key() == key  # the journal's earlier protected forms still match


def test_a_centre_protected_roster_installs_and_matches_kit_taps(tmp_path):
    from appliance.roster import install_protected, load_file

    key = cheap_key()
    doc = {"format": "capturekit.roster/2", "version": "v7", "key": key.to_dict(),
           "students": [{"kind": "id_number", "key": key.protect(Kind.ID_NUMBER, n), "school": "10001"}
                        for n in STUDENTS[:5]]}
    assert install_protected(doc, tmp_path / "roster.sqlite") == 5
    r = Roster(tmp_path / "roster.sqlite")
    assert look(r, Kind.ID_NUMBER, STUDENTS[4]).school == "10001" and look(r, Kind.ID_NUMBER, STUDENTS[5]) is None
    path = tmp_path / "roster.json"
    path.write_text(json.dumps({**doc, "students": [{"kind": "id_number", "key": STUDENTS[0]}]}))
    with pytest.raises(RosterError, match="no protected key"):  # a clear number is refused, never stored
        load_file(path, tmp_path / "roster.sqlite")
    assert r.count() == 5


def test_hundred_thousand_rows_load_and_are_indexed(tmp_path):
    rows = [idnumber.make(f"{110000 + i // 1000:06d}20040101{i % 1000:03d}")
            for i in range(100_000)]
    csv = write(tmp_path, "id_number,class\n" + "".join(f"{n},c{i % 40}\n" for i, n in enumerate(rows)))
    report = load_csv(csv, tmp_path / "roster.sqlite", new_key=cheap_key())
    assert report.rows == len(rows) == 100_000
    plan = sqlite3.connect(tmp_path / "roster.sqlite").execute(
        "EXPLAIN QUERY PLAN SELECT * FROM students WHERE kind = ? AND key = ?", ["id_number", "x"]).fetchall()
    assert "PRIMARY KEY" in plan[0][3]  # look-ups use the key index, not a scan
    assert look(Roster(tmp_path / "roster.sqlite"), Kind.ID_NUMBER, rows[-1]) is not None


# ---- a file that would silently lose students is refused, and the old roster is kept
@pytest.fixture
def loaded(tmp_path):
    db = tmp_path / "roster.sqlite"
    load_csv(write(tmp_path, "id_number\n" + "".join(f"{n}\n" for n in STUDENTS)), db, new_key=cheap_key())
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
    # VmHWM: the peak of this program since exec (ru_maxrss would include the forked test runner's memory)
    code = ("import re, sys; from appliance.cli import main; rc = main(sys.argv[1:]);"
            " print('MAXRSS', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, "--config", str(tmp_path / "kit.toml"), "roster", "load",
                          str(big)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "line 3 is longer than" in out.stderr and "Traceback" not in out.stderr
    peak_mb = int(out.stdout.split("MAXRSS")[1]) / 1024
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"  # the limit; the interpreter alone is most of it
