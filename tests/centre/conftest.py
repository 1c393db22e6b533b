"""The centre's fixtures: one real centre per backend — SQLite + a directory, PostgreSQL + S3 — on loopback.

``centre`` is parametrised over both backends, so every test that takes it runs twice. The servers are
session-scoped (starting one costs ~1–3 s); tests keep apart by their own kit names and school codes.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from centrekit import new_pg_s3
from peers.centre import CentreServer
from peers.postgres import Postgres, bin_dir
from peers.s3 import S3

BACKENDS = ["sqlite", "pg_s3"]


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """Give the name ``conftest`` back to tests/conftest.py once this file is loaded.

    Without ``__init__.py`` files every conftest is imported as the module ``conftest``; pytest drops the previous
    one from ``sys.modules`` first, so after this file loads, ``from conftest import STUDENTS`` in the kit's tests
    (collected after tests/centre/) would find this module. Nothing imports this one by name."""
    if plugin is not sys.modules[__name__]:
        return
    root = Path(__file__).resolve().parents[1] / "conftest.py"
    for other in manager.get_plugins():
        if getattr(other, "__file__", None) and Path(other.__file__).resolve() == root:
            sys.modules["conftest"] = other


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (run in CI, skipped with -m 'not slow')")


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    if bin_dir() is None:
        pytest.fail("PostgreSQL server binaries missing: apt-get install postgresql (the centre suite needs them)")
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    server = S3().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def centre(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentreServer]:
    root = tmp_path_factory.mktemp(f"centre-{request.param}")
    keys = request.getfixturevalue("centre_keys")  # tests/conftest.py: the key kits built by kit_config seal to
    if request.param == "sqlite":
        server = CentreServer(root, keys_dir=keys, max_upload_bytes=4 * 2**20)
    else:
        server = new_pg_s3(root, request.getfixturevalue("pg"), request.getfixturevalue("s3"), keys_dir=keys,
                           max_upload_bytes=4 * 2**20)
    with server:
        yield server


@pytest.fixture
def kit(centre: CentreServer) -> tuple[str, str]:
    """A fresh kit on the centre: (name, token)."""
    name = f"kit{secrets.token_hex(3)}"
    return name, centre.add_kit(name)
