"""``capturekit centre …``: the centre's commands (the server and its admin tasks), see docs/centre.md.

Everything but ``keygen`` needs the ``centre`` extra (``pip install .[centre]``); it is imported inside the
commands, so the kit's own ``capturekit`` works without it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def cmd_keygen(args: argparse.Namespace) -> int:
    from .sealing import keygen

    key_id, private, public = keygen(Path(args.out))
    print(f"key {key_id}: private key {private} (mode 0600: it never leaves the centre)")
    print(f"public key {public}; kits seal to it with, in kit.toml:")
    print(f'  [sealing]\n  public_keys = ["{public.read_text().strip()}"]')
    return 0


def _config(args: argparse.Namespace) -> Any:
    from .config import load

    return load(args.config, data_dir=args.data_dir, listen_host=getattr(args, "host", None),
                listen_port=getattr(args, "port", None), keys_dir=getattr(args, "keys_dir", None))


def _centre(args: argparse.Namespace) -> Any:
    from .context import open_centre

    return open_centre(_config(args))


def _opened(args: argparse.Namespace) -> Any:
    """The centre, once every bundle already received is opened (here, or by the running ``centre serve``)."""
    from .context import open_centre
    from .errors import CentreError
    from .keys import load_keys
    from .opener import until_opened

    cfg = _config(args)
    c = open_centre(cfg)
    try:
        ring = load_keys(cfg).ring
    except CentreError as exc:  # the keys live with the serving processes only: they open, this waits
        print(f"note: {exc}; waiting for the centre's processes to open what they received", file=sys.stderr)
        ring = None
    left = until_opened(c.engine, 60.0, c.storage, ring, cfg.open_lease_s)
    if left:
        print(f"note: {left} bundles received but not opened yet are not in what follows", file=sys.stderr)
    return c


def cmd_reopen(args: argparse.Namespace) -> int:
    """Refused bundles back to ``received`` (say, after the missing key was installed); the opener retries."""
    from sqlalchemy import update

    from .db import bundles, utcnow

    c = _centre(args)
    where = [bundles.c.status == "refused"] + ([bundles.c.reason == args.reason] if args.reason else [])
    with c.engine.begin() as conn:
        n = conn.execute(update(bundles).where(*where).values(status="received", reason=None, detail=None,
                                                              open_after=utcnow())).rowcount
    print(f"{n} refused bundles will be opened again")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    cfg = _config(args)
    logging.getLogger().setLevel(cfg.log_level.upper())
    return serve(cfg)


def cmd_migrate(args: argparse.Namespace) -> int:
    from .db import schema_version

    c = _centre(args)
    print(f"database {c.engine.url.render_as_string(hide_password=True)}: schema {schema_version(c.engine)}")
    return 0


def cmd_add_kit(args: argparse.Namespace) -> int:
    from .kits import add_kit

    token = add_kit(_centre(args).engine, args.name)
    print(f"kit {args.name} added. Its token (shown once, the centre keeps only its hash):\n{token}")
    print("put it in the kit's sync configuration (ansible vault: kit_token)")
    return 0


def cmd_rotate_token(args: argparse.Namespace) -> int:
    from .kits import rotate_token

    token = rotate_token(_centre(args).engine, args.name)
    print(f"kit {args.name}: new token (the old one no longer works):\n{token}")
    return 0


def cmd_revoke_kit(args: argparse.Namespace) -> int:
    from .kits import revoke_kit

    revoke_kit(_centre(args).engine, args.name)
    print(f"kit {args.name} revoked: its token is refused from now on")
    return 0


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") + "Z" if value else "never"


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def cmd_kits(args: argparse.Namespace) -> int:
    from .kits import list_kits

    rows = list_kits(_centre(args).engine)
    _table(["kit", "state", "schools", "last seen (UTC)", "software", "backlog", "disk free MB"],
           [[k["name"], k["state"], ",".join(k["schools"]) or "-", _when(k["last_seen_at"]),
             k["software_version"] or "-", "-" if k["backlog"] is None else k["backlog"],
             "-" if k["disk_free_mb"] is None else k["disk_free_mb"]] for k in rows])
    return 0


def cmd_school_add(args: argparse.Namespace) -> int:
    from .rosters import add_school

    s = add_school(_centre(args).engine, args.code, args.name, args.parent, args.argon2_opslimit,
                   args.argon2_memlimit_kib * 1024)
    print(f"school {s.code} ({s.name}) added" + (f" as a site of {args.parent}" if args.parent else ""))
    return 0


def cmd_school_list(args: argparse.Namespace) -> int:
    from .rosters import list_schools

    _table(["code", "name", "main school", "students"],
           [[s["code"], s["name"], s["parent"] or "-", s["students"]] for s in list_schools(_centre(args).engine)])
    return 0


def cmd_roster_load(args: argparse.Namespace) -> int:
    from .rosters import load_roster

    r = load_roster(_centre(args).engine, args.school, Path(args.file), args.encoding, args.skip_bad)
    per = ", ".join(f"{k} {v}" for k, v in sorted(r.per_school.items()))
    print(f"school {r.school}: roster version {r.version}, {r.rows} students ({per}); keys {r.keys}")
    if r.resolved:
        print(f"{r.resolved} captures that arrived with a protected key only now have their student")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    from .rosters import assign

    now = assign(_centre(args).engine, args.kit, args.school, args.replace)
    print(f"kit {args.kit} now gets the roster of: {', '.join(now)}")
    return 0


def cmd_unassign(args: argparse.Namespace) -> int:
    from .rosters import unassign

    unassign(_centre(args).engine, args.kit, args.school)
    print(f"kit {args.kit} no longer gets the roster of {args.school}")
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .db import schools
    from .errors import CentreError
    from .selection import progress

    c = _opened(args)
    with c.engine.connect() as conn:
        school_id = conn.execute(select(schools.c.id).where(schools.c.code == args.school)).scalar()
        if school_id is None:
            raise CentreError(f"no school {args.school!r}")
        rows = progress(conn, school_id)
    total = [sum(getattr(r, f) for r in rows) for f in ("students", "photographed", "missing", "retakes")]
    _table(["school", "class", "students", "photographed", "missing", "retakes"],
           [[r.school, r.class_name or "-", r.students, r.photographed, r.missing, r.retakes] for r in rows]
           + [["total", "", *total]])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    c = _opened(args)
    r = export(c.engine, c.storage, args.school, Path(args.dir))
    print(f"{r.directory}: {r.photos} photos of {r.students} students, {r.missing} missing"
          + (f", {len(r.problems)} problems:" if r.problems else ""))
    for p in r.problems:
        print(f"  {p}")
    return 1 if r.problems else 0


def _password(args: argparse.Namespace) -> str:
    """The new password: from --password-file, else stdin when it is not a terminal, else asked twice."""
    import getpass

    from .errors import CentreError

    if args.password_file:
        return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first, second = getpass.getpass("password: "), getpass.getpass("again: ")
    if first != second:
        raise CentreError("the two passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    from .accounts import add_user, parse_roles
    from .errors import CentreError

    if bool(args.school) == bool(args.roles):
        raise CentreError("give --roles viewer,operator,exporter (staff) or --school CODE (a school's contact)")
    roles = parse_roles(args.roles) if args.roles else None
    engine = _centre(args).engine
    u = add_user(engine, args.name, _password(args), kind="school" if args.school else "staff", roles=roles,
                 school=args.school, display_name=args.display_name)
    what = f"contact of school {u.school_code}" if u.school_code else f"staff: {', '.join(sorted(u.roles))}"
    print(f"user {u.username} added ({what})")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from .accounts import list_users

    _table(["user", "kind", "roles / school", "active", "name"],
           [[u.username, u.kind, ",".join(sorted(u.roles)) or u.school_code or "-", "yes" if active else "no",
             u.display_name] for u, active in list_users(_centre(args).engine)])
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from .accounts import set_password

    set_password(_centre(args).engine, args.name, _password(args))
    print(f"user {args.name}: password changed (their sessions ended)")
    return 0


def cmd_user_active(args: argparse.Namespace) -> int:
    from .accounts import set_active

    set_active(_centre(args).engine, args.name, args.enable)
    print(f"user {args.name} {'enabled' if args.enable else 'disabled (their sessions ended)'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    centre = sub.add_parser("centre", help="the centre: keys, server, kits, schools, rosters, exports",
                            description="The centre's commands (docs/centre.md).")
    csub = centre.add_subparsers(dest="centre_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="centre.toml (default $CAPTUREKIT_CENTRE_CONFIG, /etc/capturekit/centre.toml)")
    common.add_argument("--data-dir", help="override data_dir")

    def add(name: str, func: Any, text: str, parser: Any = csub) -> argparse.ArgumentParser:
        sp = parser.add_parser(name, help=text, description=text, parents=[common])
        sp.set_defaults(func=func)
        return sp

    sp = csub.add_parser("keygen", help="write a new sealing key pair (<key_id>.key, <key_id>.pub)")
    sp.add_argument("--out", default="/etc/capturekit/centre-keys", help="key directory")
    sp.set_defaults(func=cmd_keygen)
    sp = add("serve", cmd_serve, "run the centre server (the kit API; embedded default: SQLite + a directory)")
    sp.add_argument("--host", help="override listen_host")
    sp.add_argument("--port", type=int, help="override listen_port")
    sp.add_argument("--keys-dir", help="override keys_dir")
    add("migrate", cmd_migrate, "bring the database schema up to date (serve does it too)")
    add("add-kit", cmd_add_kit, "register a kit and print its token once").add_argument("name")
    add("revoke-kit", cmd_revoke_kit, "refuse a kit's token from now on").add_argument("name")
    add("rotate-token", cmd_rotate_token, "give a kit a new token (the old one stops working)").add_argument("name")
    add("kits", cmd_kits, "every kit: state, schools, last seen, latest heartbeat")
    school = csub.add_parser("school", help="schools and joint-programme sites")
    ssub = school.add_subparsers(dest="school_cmd", required=True)
    sp = add("add", cmd_school_add, "add a school (or, with --parent, a joint-programme site)", ssub)
    sp.add_argument("code")
    sp.add_argument("--name", default="", help="the school's name")
    sp.add_argument("--parent", help="main school this site reports through (shares its roster key)")
    from appliance.protect import DEFAULT_MEMLIMIT, DEFAULT_OPSLIMIT

    sp.add_argument("--argon2-opslimit", type=int, default=DEFAULT_OPSLIMIT, help="roster key cost (passes)")
    sp.add_argument("--argon2-memlimit-kib", type=int, default=DEFAULT_MEMLIMIT // 1024,
                    help="roster key cost (memory, KiB)")
    add("list", cmd_school_list, "every school and site with its number of students", ssub)
    roster = csub.add_parser("roster", help="school rosters")
    rsub = roster.add_subparsers(dest="roster_cmd", required=True)
    sp = add("load", cmd_roster_load, "load a school's clear CSV (docs/roster-format.md); replaces its students",
             rsub)
    sp.add_argument("school")
    sp.add_argument("file")
    sp.add_argument("--encoding", default="auto")
    sp.add_argument("--skip-bad", action="store_true", help="load the good rows and list the bad ones")
    sp = add("assign", cmd_assign, "give a kit a school's roster (and its sites')")
    sp.add_argument("kit")
    sp.add_argument("school")
    sp.add_argument("--replace", action="store_true", help="drop the kit's other schools first")
    sp = add("unassign", cmd_unassign, "take a school's roster off a kit")
    sp.add_argument("kit")
    sp.add_argument("school")
    add("progress", cmd_progress, "per class: students, photographed, missing, retakes").add_argument("school")
    sp = add("export", cmd_export, "write the print bureau's delivery folder (docs/delivery-format.md)")
    sp.add_argument("school")
    sp.add_argument("dir")
    add("reopen", cmd_reopen, "open refused bundles again (after installing a missing key)").add_argument(
        "--reason", help="only those refused for this reason (unknown_key, not_openable, ...)")
    user = csub.add_parser("user", help="web accounts: staff (viewer/operator/exporter) and school contacts")
    usub = user.add_subparsers(dest="user_cmd", required=True)
    sp = add("add", cmd_user_add, "add a web account; the password comes from --password-file, stdin or a prompt",
             usub)
    sp.add_argument("name")
    sp.add_argument("--roles", help="staff roles, comma-separated: viewer, operator, exporter")
    sp.add_argument("--school", help="school code: the account is that school's contact (one per school)")
    sp.add_argument("--display-name", default="", help="shown on the pages")
    sp.add_argument("--password-file", help="read the password from this file")
    add("list", cmd_user_list, "every web account", usub)
    sp = add("passwd", cmd_user_passwd, "set a new password (ends the account's sessions)", usub)
    sp.add_argument("name")
    sp.add_argument("--password-file", help="read the password from this file")
    for name, enable, text in (("enable", True, "let an account log in again"),
                               ("disable", False, "stop an account from logging in (ends its sessions)")):
        sp = add(name, cmd_user_active, text, usub)
        sp.add_argument("name")
        sp.set_defaults(enable=enable)


if __name__ == "__main__":
    sys.exit("use: capturekit centre …")
