"""Shared fixtures: a kit in a temporary data directory with a small roster, simulated devices, real storage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import idnumber
from appliance.identity import Kind, Source, make
from appliance.protect import RosterKey
from appliance.roster import load_csv
from appliance.simulate import Classroom

STUDENTS = [idnumber.make(f"440305200501{i % 28 + 1:02d}{i:03d}") for i in range(1, 21)]
CHEAP = (1, 8 * 1024)  # Argon2id opslimit, memlimit (bytes) for tests: the real cost is measured in benchmarks


def cheap_key() -> RosterKey:
    return RosterKey.new(*CHEAP)


@pytest.fixture(scope="session")
def centre_keys(tmp_path_factory) -> Path:
    """A centre sealing key pair for the whole run (the private half stays here, outside every kit)."""
    from centre.sealing import keygen

    d = tmp_path_factory.mktemp("centre-keys")
    keygen(d)
    global KEYS
    KEYS = d
    return d


KEYS: Path | None = None


def opened(path: Path):
    """Open a kit's bundle or reject file as the centre does (with this run's private key)."""
    from centre.sealing import KeyRing, open_bundle_file

    return open_bundle_file(path, KeyRing.load(KEYS))


def sealing_line(keys: Path) -> str:
    return next(keys.glob("*.pub")).read_text().strip()


def card(number: str, source: Source = Source.SIM):
    return make(Kind.ID_NUMBER, number, source, "test-reader")


@pytest.fixture
def kit_config(tmp_path: Path, centre_keys: Path) -> config_mod.Config:
    cfg = config_mod.Config()
    cfg = dataclasses.replace(
        cfg, data_dir=str(tmp_path / "data"), kit_id="kit-test",
        camera=dataclasses.replace(cfg.camera, width=640, height=480),
        sealing=dataclasses.replace(cfg.sealing, public_keys=(sealing_line(centre_keys),)),
        privacy=dataclasses.replace(cfg.privacy, argon2_opslimit=CHEAP[0], argon2_memlimit_kib=CHEAP[1] // 1024))
    cfg.data_path.mkdir(parents=True)
    csv = tmp_path / "roster.csv"
    csv.write_text("id_number,name,class\n" + "".join(f"{n},Student {i},3A\n" for i, n in enumerate(STUDENTS)))
    load_csv(csv, cfg.roster_path, new_key=cheap_key())
    return cfg


@pytest.fixture
def room(kit_config):
    r = Classroom(kit_config)
    r.daemon.start()
    yield r
    r.daemon.close()
