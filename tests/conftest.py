"""Shared fixtures: a kit in a temporary data directory with a small roster, simulated devices, real storage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance import idnumber
from appliance.identity import Kind, Source, make
from appliance.roster import load_csv
from appliance.simulate import Classroom

STUDENTS = [idnumber.make(f"440305200501{i % 28 + 1:02d}{i:03d}") for i in range(1, 21)]


def card(number: str, source: Source = Source.SIM):
    return make(Kind.ID_NUMBER, number, source, "test-reader")


@pytest.fixture
def kit_config(tmp_path: Path) -> config_mod.Config:
    cfg = config_mod.Config()
    cfg = dataclasses.replace(cfg, data_dir=str(tmp_path / "data"), kit_id="kit-test",
                              camera=dataclasses.replace(cfg.camera, width=640, height=480))
    cfg.data_path.mkdir(parents=True)
    csv = tmp_path / "roster.csv"
    csv.write_text("id_number,name,class\n" + "".join(f"{n},Student {i},3A\n" for i, n in enumerate(STUDENTS)))
    load_csv(csv, cfg.roster_path)
    return cfg


@pytest.fixture
def room(kit_config):
    r = Classroom(kit_config)
    r.daemon.start()
    yield r
    r.daemon.close()
