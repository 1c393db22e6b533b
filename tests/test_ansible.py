"""The ansible tree under the real tools: ansible-playbook --syntax-check, ansible-lint's production profile,
the kit.toml template rendered by ansible and loaded by capturekit's own configuration loader, and the
example vault opened with its documented test password. The real apply into debootstrapped roots is
``scripts/deploy-check.sh`` (root, a few minutes)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance import config as config_mod
from appliance.selftest import parse_public_key

try:
    from appliance.bundle import key_id_of
except ImportError:  # a build without sealed bundles
    def key_id_of(public: bytes) -> str:
        return "k1"

KEY = f"{key_id_of(bytes(32))}:{base64.b64encode(bytes(32)).decode()}"

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = ROOT / "ansible"
EXAMPLE = ANSIBLE / "inventory" / "example"
PASSWORD = EXAMPLE / "vault-password.txt"
BIN = Path(sys.executable).parent
PLAYBOOK = BIN / "ansible-playbook"

pytestmark = pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible not installed (pip install -e '.[test]')")


def env(password: Path | None = PASSWORD) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    e.update(ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
             PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}")
    if password is not None:
        e["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password)
    return e


def run(*args: str, timeout: float = 300, password: Path | None = PASSWORD) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=ANSIBLE, env=env(password), capture_output=True, text=True,
                          timeout=timeout)


def test_syntax_check():
    out = run(str(PLAYBOOK), "--syntax-check", "-i", "inventory/example", "site.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_syntax_check_catches_a_broken_playbook(tmp_path):
    bad = ANSIBLE / f".broken-{os.getpid()}.yml"
    bad.write_text("- hosts: all\n  tasks:\n    - ansible.builtin.nosuchmodule: {}\n")
    try:
        out = run(str(PLAYBOOK), "--syntax-check", "-i", "inventory/example", str(bad))
    finally:
        bad.unlink()
    assert out.returncode != 0


@pytest.mark.skipif(not (BIN / "ansible-lint").exists(), reason="ansible-lint not installed")
def test_ansible_lint_production_profile():
    out = run(str(BIN / "ansible-lint"), "--profile", "production", "--nocolor", timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in out.stdout + out.stderr


def vault(path: Path) -> dict:
    out = run(str(BIN / "ansible-vault"), "view", "--vault-password-file", str(PASSWORD), str(path))
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_example_vault_opens_with_the_documented_password_and_is_coherent(tmp_path):
    for path in EXAMPLE.glob("group_vars/*/vault.yml"):
        assert path.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256"), f"{path} is not encrypted"
    inventory = yaml.safe_load((EXAMPLE / "hosts.yml").read_text())
    kits = set(inventory["all"]["children"]["kits"]["hosts"])
    assert len(kits) == 2 and set(inventory["all"]["children"]["centre"]["hosts"]) == {"centre-01"}
    tokens = vault(EXAMPLE / "group_vars/kits/vault.yml")["vault_kit_tokens"]
    assert set(tokens) == kits and len(set(tokens.values())) == 2
    public = vault(EXAMPLE / "group_vars/all/vault.yml")["vault_centre_sealing_public_keys"]
    centre = vault(EXAMPLE / "group_vars/centre/vault.yml")
    key_id, pub = parse_public_key(public[0])
    pair = centre["vault_centre_sealing_keys"][0]
    assert pair["id"] == key_id and pair["public"].strip() == public[0]
    from nacl.public import PrivateKey

    private = base64.b64decode(pair["private"].strip().splitlines()[-1])  # keygen's <key_id>.key: last line
    assert bytes(PrivateKey(private).public_key) == pub, "private and public keys differ"
    try:
        from centre.sealing import load_private
    except ImportError:
        return
    key_file = tmp_path / f"{key_id}.key"
    key_file.write_text(pair["private"])
    key_file.chmod(0o600)
    assert load_private(key_file)[0] == key_id


def test_wrong_vault_password_is_refused(tmp_path):
    wrong = tmp_path / "pw"
    wrong.write_text("not the password\n")
    out = run(str(BIN / "ansible-vault"), "view", "--vault-password-file", str(wrong),
              str(EXAMPLE / "group_vars/kits/vault.yml"), password=None)
    assert out.returncode != 0 and "Decryption failed" in out.stderr


def render_kit_toml(tmp_path: Path, variables: dict) -> Path:
    """Render roles/kit/templates/kit.toml.j2 with ansible's own templating on localhost."""
    return render(tmp_path, "kit", "kit.toml", variables)


def render(tmp_path: Path, role: str, name: str, variables: dict) -> Path:
    """Render roles/ROLE/templates/NAME.j2 with the role's defaults and ``variables`` (ansible's templating)."""
    dest = tmp_path / name
    play = tmp_path / "render.yml"
    play.write_text(yaml.safe_dump([{
        "name": "Render kit.toml", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": variables,
        "tasks": [{"name": "Render", "ansible.builtin.template": {
            "src": str(ANSIBLE / f"roles/{role}/templates/{name}.j2"), "dest": str(dest), "mode": "0640"}}],
    }]))
    extra = tmp_path / "roles-defaults.json"
    defaults = {}
    for r in ("capturekit", role):
        defaults.update(yaml.safe_load((ANSIBLE / f"roles/{r}/defaults/main.yml").read_text()))
    defaults.update(app_commands=["run", "config"], app_qc_installed=False,
                    app_config_tables=_tables(), ansible_managed="test")
    defaults.update(variables)
    defaults = {k: v for k, v in defaults.items() if k not in ("capturekit_start_services", "capturekit_wheel")}
    extra.write_text(json.dumps(defaults))
    out = run(str(PLAYBOOK), "-i", "localhost,", str(play), "-e", f"@{extra}",
              "-e", f"ansible_python_interpreter={sys.executable}")
    assert out.returncode == 0, out.stdout + out.stderr
    return dest


def _tables() -> list[str]:
    return [line.strip("[]") for line in config_mod.defaults_toml().splitlines()
            if line.startswith("[") and not line.startswith("[[")]


def test_rendered_kit_toml_loads_in_capturekit(tmp_path):
    variables = {
        "inventory_hostname": "gd-kit-07", "kit_school": "10559", "capturekit_on_pi": True,
        "kit_camera": {"exposure_us": 6000, "colour_gains": [1.92, 1.71]},
        "kit_readers": [{"type": "sam", "options": {"port": "/dev/idcard"}},
                        {"type": "pcsc", "options": {"profile": "uid", "reader_filter": 'ACR "122"'}},
                        {"type": "qr_camera"}],
        "kit_makeup_qr_public_keys": [base64.b64encode(bytes(32)).decode()],
        "kit_centre_url": "https://centre.example.invalid", "kit_sealing_public_keys": [KEY],
        "kit_purge": {"end_of_day": True}, "kit_qc": False,
    }
    cfg = config_mod.load(render_kit_toml(tmp_path, variables))
    assert cfg.kit_id == "gd-kit-07" and cfg.school == "10559"
    assert cfg.gpio.pin_factory == "lgpio" and cfg.camera.backend == "picamera2"
    assert cfg.camera.exposure_us == 6000 and cfg.camera.colour_gains == (1.92, 1.71)
    assert [r.type for r in cfg.readers] == ["sam", "pcsc", "qr_camera"]
    assert cfg.readers[1].options == {"profile": "uid", "reader_filter": 'ACR "122"'}
    assert cfg.qc.enabled is False and cfg.data_dir == "/var/lib/capturekit"
    sealing = getattr(cfg, "sealing", None)
    if sealing is not None:  # written only once capturekit knows the table
        assert tuple(sealing.public_keys) == (KEY,)
    purge = getattr(cfg, "purge", None)
    if purge is not None:
        assert purge.end_of_day is True
    sync = getattr(cfg, "sync", None)
    if sync is not None:
        assert sync.centre_url == "https://centre.example.invalid" and sync.token_file == "/etc/capturekit/kit.token"


def test_rendered_kit_toml_off_a_pi_uses_the_simulated_twins(tmp_path):
    cfg = config_mod.load(render_kit_toml(tmp_path, {"inventory_hostname": "kit-ci", "capturekit_on_pi": False}))
    assert cfg.gpio.pin_factory == "mock" and cfg.camera.backend == "sim" and cfg.qc.enabled is True
    assert [r.type for r in cfg.readers] == ["sim"]


def test_rendered_centre_toml_loads_in_the_centre(tmp_path):
    centre_config = pytest.importorskip("centre.config")
    path = render(tmp_path, "centre", "centre.toml", {
        "inventory_hostname": "centre-01", "centre_storage_url": "s3://photos/10559",
        "centre_s3_endpoint_url": "https://s3.example.invalid", "centre_s3_region": "cn-south-1",
        "centre_sealing_keys": [{"id": "4e003feab5a3cc4e", "private": "x", "public": "y"}],
        "centre_makeup_public_keys": [base64.b64encode(bytes(32)).decode()]})
    cfg = centre_config.load(path)
    assert cfg.database_url == "postgresql+psycopg://capturekit-centre@/capturekit?host=/run/postgresql"
    assert cfg.storage_url == "s3://photos/10559" and cfg.s3_region == "cn-south-1"
    assert cfg.data_dir == "/var/lib/capturekit-centre" and cfg.keys_dir == "/etc/capturekit/centre-keys"
    assert cfg.current_key == "4e003feab5a3cc4e" and cfg.listen_port == 8080 and cfg.listen_host == "0.0.0.0"
    assert len(cfg.makeup_public_keys) == 1


def test_units_the_roles_install_are_the_tested_files():
    kit_tasks = (ANSIBLE / "roles/kit/tasks/main.yml").read_text()
    assert "capturekit.service" in kit_tasks and "capturekit-sync.service" in kit_tasks
    assert "kit_units_dir" in kit_tasks and "capturekit-centre.service" in (
        ANSIBLE / "roles/centre/tasks/main.yml").read_text()
    for name in ("capturekit.service", "capturekit-sync.service", "capturekit-centre.service",
                 "journald-capturekit.conf"):
        assert (ROOT / "systemd" / name).exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_wheel_build_is_reproducible(tmp_path):
    first = subprocess.run(["bash", str(ANSIBLE / "build-wheel.sh"), str(tmp_path / "a")], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert first.returncode == 0, first.stderr
    second = subprocess.run(["bash", str(ANSIBLE / "build-wheel.sh"), str(tmp_path / "b")], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    a, b = Path(first.stdout.strip()), Path(second.stdout.strip())
    assert a.name.startswith("capturekit-") and a.read_bytes() == b.read_bytes()
