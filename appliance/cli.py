"""The ``capturekit`` command.

  capturekit run                 the capture daemon (devices from the config; simulated by default)
  capturekit simulate -n 200     a scripted classroom through the real daemon, with a summary
  capturekit status              shots, voids, frames and outbox of the current session
  capturekit recover             settle the journal and spool after a crash (run also at daemon start)
  capturekit roster load FILE    validate and install the school's roster CSV
  capturekit session new|close   start a new classroom session / close the current one
  capturekit enter               operator: type a student's ID number (temporary, lost or unreadable card)
  capturekit cancel | accept     operator: void the pending shot / keep the frame QC rejected
  capturekit selftest            bring-up check of every device on a real kit
  capturekit config [--defaults] check the configuration / print the embedded defaults
  capturekit diagram             the session state machine as a Mermaid diagram
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import time
from pathlib import Path

from . import config as config_mod
from . import datadir, logs
from .config import Config, ConfigError
from .errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERRUPTED, DataDirBusy, KitError

log = logging.getLogger("capturekit")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 4056x3040, got {text!r}") from None
    return w, h


def _config(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config, data_dir=getattr(args, "data_dir", None))


def _journal(cfg: Config, create: bool = False):
    """The kit's journal, for the commands that change it outside the daemon (never a new kit by mistake)."""
    from .clock import SystemClock
    from .journal import Journal

    datadir.require(cfg.data_path)
    return Journal(cfg.data_path / "journal.sqlite", cfg.kit_id, SystemClock().wall, create=create)


def _signal_fault(cfg: Config) -> None:
    """The daemon will not start: show FAULT on the status LED with the error beep, so the crew looks."""
    from .devices.gpio import Beeper, StatusLight, pin_factory
    from .session import Led, Tone

    try:
        factory = pin_factory(cfg.gpio.pin_factory)
        led, beeper = StatusLight(cfg.status_led, factory), Beeper(cfg.buzzer, factory)
        led.show(Led.FAULT)
        beeper.play(Tone.ERROR)
        time.sleep(3.0)
        led.close()
        beeper.close()
    except Exception as exc:  # no GPIO here (laptop, pins taken): the log line is the signal
        log.warning("could not show the fault on the status LED: %s", exc)


def cmd_run(args: argparse.Namespace) -> int:
    from .control import ControlServer
    from .daemon import Daemon
    from .factory import build_assessor, build_devices

    cfg = _config(args)
    daemon = Daemon(cfg, build_devices(cfg), assess=build_assessor(cfg))
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())  # before "ready": a stop is never lost
    signal.signal(signal.SIGINT, lambda *_: daemon.stop())
    control = None
    try:
        try:
            daemon.start(check_space=True)
        except DataDirBusy:
            raise  # the other process owns the LED and the pins
        except KitError:
            daemon.close()
            _signal_fault(cfg)
            raise
        for r in daemon.recovered:
            print(f"recovered: {r}")
        daemon.start_scrub()
        control = ControlServer(cfg.control_path, daemon, daemon.lock)
        control.start()
        return daemon.run()
    finally:
        if control:
            control.stop()
        daemon.close()


def cmd_sync(args: argparse.Namespace) -> int:
    from sync.daemon import main_loop

    return main_loop(_config(args), drain=args.drain)


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import format_summary, run, sim_config

    base = config_mod.load(args.config)
    data = Path(args.data_dir) if args.data_dir else Path("sim-runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    cfg = sim_config(base, data, args.size)
    summary = run(cfg, args.students, seed=args.seed, qc=args.qc or ("real" if cfg.qc.enabled else "sim"),
                  sources=args.readers == "all", school_csv=Path(args.school_csv) if args.school_csv else None)
    print(json.dumps(summary, ensure_ascii=False) if args.json else format_summary(summary))
    return EXIT_CHECK_FAILED if summary["mismatches"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    from .status import status_report

    cfg = _config(args)
    datadir.require(cfg.data_path)
    report = status_report(cfg, deep=args.scrub)
    print(json.dumps(report, ensure_ascii=False, indent=1) if args.json else report["text"])
    return EXIT_CHECK_FAILED if report.get("damaged") else 0


def cmd_recover(args: argparse.Namespace) -> int:
    from .recovery import recover
    from .spool import Spool

    cfg = _config(args)
    data = datadir.require(cfg.data_path)
    if not (data / "journal.sqlite").exists():
        print("nothing to recover: no journal here yet (the capture daemon has not run)")
        return 0
    lock = datadir.Lock(data / datadir.KIT_LOCK)
    try:
        lock.acquire("recover")
    except DataDirBusy as exc:
        raise DataDirBusy(f"{exc}. If the capture daemon is running, it recovered at its own start:"
                          " there is nothing to do") from None
    try:
        journal = _journal(cfg)
        try:
            done = recover(journal, Spool(data / "spool"))
        finally:
            journal.close()
    finally:
        lock.release()
    print("\n".join(done) if done else "nothing to recover")
    return 0


def cmd_roster(args: argparse.Namespace) -> int:
    from .protect import RosterKey
    from .roster import Roster, RosterError, load_file

    cfg = _config(args)
    datadir.require(cfg.roster_path.parent)
    if args.action == "load":
        if not args.file:
            print("roster load needs the CSV file: capturekit roster load FILE.csv", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            report = load_file(Path(args.file), cfg.roster_path, encoding=args.encoding, skip_bad=args.skip_bad,
                               allow_empty=args.allow_empty, new_key=RosterKey.new(*cfg.roster_key_cost()),
                               school=cfg.school)
        except RosterError as exc:
            print(f"roster not loaded: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"roster loaded: {report.rows} students ({report.keys or 'protected by the centre'}),"
              f" encoding {report.encoding}")
        if report.dropped:
            print(f"  kept on the kit in protected form only; not kept at all: {', '.join(report.dropped)}")
        for line, problem in report.skipped:
            print(f"  skipped line {line}: {problem}")
        return 0
    roster = Roster(cfg.roster_path)
    print(f"{cfg.roster_path}: {roster.count()} students")
    roster.close()
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    """Close the open session (and open a new one): directly, or through the running daemon."""
    from .control import send

    cfg = _config(args)
    data = datadir.require(cfg.data_path)
    lock = datadir.Lock(data / datadir.KIT_LOCK)
    try:
        lock.acquire(f"session {args.action}")
    except DataDirBusy:  # the daemon runs: it is the journal's writer, so it does it
        print(send(cfg.control_path, {"cmd": "session", "action": args.action, "school": args.school,
                                      "label": args.label}).replace("; ", "\n"))
        return 0
    try:
        journal = _journal(cfg, create=True)
        try:
            current = journal.current_session()
            if current is not None:
                journal.close_session(current)
                print(f"session {current} closed")
            if args.action == "new":
                print(f"session {journal.open_session(args.school or cfg.school, args.label)} opened")
        finally:
            journal.close()
    finally:
        lock.release()
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    from .control import send

    cfg = _config(args)
    print(send(cfg.control_path, {"cmd": args.command}))
    return 0


def cmd_enter(args: argparse.Namespace) -> int:
    """Manual identity for a student without a readable card: the ID number, check digit validated and
    typed twice (the kit holds no names to cross-check against), looked up in the roster, then sent."""
    from . import idnumber
    from .control import send
    from .identity import Kind, Source, make
    from .roster import Roster

    cfg = _config(args)
    roster = Roster(cfg.roster_path)
    once = args.id_number is not None
    while True:
        raw = args.id_number if once else input("ID number (blank to stop): ")
        if not raw.strip():
            return 0
        try:
            number = idnumber.validate(raw)
        except idnumber.InvalidIdNumber as exc:
            print(f"not a valid ID number ({exc}): check it against the student's document")
            if once:
                return EXIT_BAD_INPUT
            continue
        if not once and idnumber.normalise(input("the same number again: ")) != number:
            print("the two entries differ: nothing sent, start again")
            continue
        key = roster.key()
        if key is None or roster.lookup(key.identity(make(Kind.ID_NUMBER, number, Source.MANUAL))) is None:
            print("warning: not on this school's roster — the kit will refuse it")
        send(cfg.control_path, {"cmd": "identity", "kind": "id_number", "key": number})
        print("sent — watch the status LED (cyan: ready, press the pedal)")
        if once:
            return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete the sealed files the centre has confirmed, past the retention: directly, or through the daemon."""
    from .control import send
    from .journal import Journal
    from .purge import purge
    from .spool import Spool

    cfg = _config(args)
    data = datadir.require(cfg.data_path)
    lock = datadir.Lock(data / datadir.KIT_LOCK)
    try:
        lock.acquire("purge")
    except DataDirBusy:
        print(send(cfg.control_path, {"cmd": "purge"}))
        return 0
    try:
        journal = Journal(data / "journal.sqlite", cfg.kit_id, _wall(), create=False)
        try:
            done = purge(journal, Spool(data / "spool"), cfg.purge)
        finally:
            journal.close()
    finally:
        lock.release()
    print(f"purged {len(done)} sealed files the centre confirmed")
    return 0


def _wall():
    from .clock import SystemClock

    return SystemClock().wall


def cmd_selftest(args: argparse.Namespace) -> int:
    from .selftest import selftest

    cfg = _config(args)
    ok = selftest(cfg, wait_trigger_s=args.wait_trigger, out=print, pause=args.pause)
    return 0 if ok else EXIT_CHECK_FAILED


def cmd_config(args: argparse.Namespace) -> int:
    if args.defaults:
        print(config_mod.defaults_toml(), end="")
        return 0
    cfg = _config(args)
    print(f"configuration OK: kit {cfg.kit_id}, data {cfg.data_dir}, camera {cfg.camera.backend}, "
          f"gpio {cfg.gpio.pin_factory}, readers {[r.type for r in cfg.readers]}")
    return 0


def cmd_diagram(args: argparse.Namespace) -> int:
    from .session import mermaid

    print(mermaid(), end="")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="capturekit", description="Diploma-photo capture kit.")
    p.add_argument("--config", help=f"configuration file (default ${config_mod.ENV_PATH} or {config_mod.DEFAULT_PATH})")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, func, help: str, data_dir: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        if data_dir:
            sp.add_argument("--data-dir", help="data directory (overrides the config's data_dir)")
        return sp

    add("run", cmd_run, "run the capture daemon")
    sp = add("sync", cmd_sync, "run the sync daemon: upload the outbox to the centre (sync.* in kit.toml)")
    sp.add_argument("--drain", type=float, default=0.0, metavar="SECONDS",
                    help="upload what is pending (giving up after SECONDS), then exit")
    sp = add("simulate", cmd_simulate, "run a scripted classroom through the real daemon with simulated devices")
    sp.add_argument("-n", "--students", type=int, default=60)
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--size", type=_size, help="camera frame size, e.g. 1014x760 (default: config, 4056x3040)")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    sp.add_argument("--qc", choices=["real", "sim"], help="real shot-time QC on face photos (default), or a"
                    " scripted stand-in (fast: no face models)")
    sp.add_argument("--readers", choices=["all", "sim"], default="all", help="all: ID-card SAM reader (emulated),"
                    " camera QR, control socket and the simulated card reader; sim: the simulated card reader only")
    sp.add_argument("--school-csv", help="also write the simulated school's roster CSV here (for a centre)")
    sp.set_defaults(data_dir=None)
    sp = add("status", cmd_status, "shots, voids, frames and outbox of the current session")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--scrub", action="store_true", help="check every bundle's SHA-256 now (reads every byte)")
    add("recover", cmd_recover, "settle journal and spool after a crash")
    sp = add("roster", cmd_roster, "load or inspect the approved-graduate roster")
    sp.add_argument("action", choices=["load", "info"])
    sp.add_argument("file", nargs="?", help="CSV file (for load)")
    sp.add_argument("--encoding", default="auto", help="CSV encoding (default: UTF-8, else GB18030)")
    sp.add_argument("--skip-bad", action="store_true", help="load the good rows and list the bad ones")
    sp.add_argument("--allow-empty", action="store_true", help="install a roster with no students")
    sp = add("session", cmd_session, "start a new session or close the current one")
    sp.add_argument("action", choices=["new", "close"])
    sp.add_argument("--school", default="")
    sp.add_argument("--label", default="")
    sp = add("enter", cmd_enter, "operator: enter a student's ID number by hand (temporary/lost/unreadable card)")
    sp.add_argument("--id-number", help="enter this one number and exit (default: prompt repeatedly, twice each)")
    add("purge", cmd_purge, "delete sealed files the centre has confirmed, past the retention (purge.*)")
    for name, help in (("cancel", "void the pending shot"), ("accept", "keep the frame QC just rejected")):
        sp = add(name, cmd_control, f"operator: {help}")
        sp.set_defaults(command=name)
    sp = add("selftest", cmd_selftest, "bring-up check of camera, LEDs, buzzer, light panel, trigger and readers")
    sp.add_argument("--wait-trigger", type=float, default=10.0, help="seconds to wait for a pedal press (0: skip)")
    sp.add_argument("--pause", type=float, default=0.3, help="seconds each LED state, tone and level is shown")
    sp = add("config", cmd_config, "check the configuration")
    sp.add_argument("--defaults", action="store_true", help="print the embedded defaults as TOML")
    add("diagram", cmd_diagram, "print the session state diagram (Mermaid)", data_dir=False)
    from centre.cli import add_commands

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; an expected problem is one line on stderr and a documented exit code (errors.py)."""
    args = parser().parse_args(argv)
    daemon = args.cmd in ("run", "sync") or getattr(args, "centre_cmd", "") == "serve"
    logs.setup(logging.DEBUG if args.verbose else logging.INFO if daemon else logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KitError as exc:
        print(f"capturekit {args.cmd}: {exc}", file=sys.stderr)
        return exc.code
    except PermissionError as exc:
        print(f"capturekit {args.cmd}: permission denied: {exc.filename or exc}", file=sys.stderr)
        return KitError.code
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"capturekit {args.cmd}: {exc.strerror or exc}{where}", file=sys.stderr)
        return KitError.code
    except KeyboardInterrupt:
        print(f"capturekit {args.cmd}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
