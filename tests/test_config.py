"""Configuration: validated at start-up, every error names the bad key."""

import pytest

from appliance import config


def write(tmp_path, text):
    p = tmp_path / "kit.toml"
    p.write_text(text)
    return p


def test_defaults_round_trip(tmp_path):
    assert config.load(write(tmp_path, config.defaults_toml())) == config.Config()


@pytest.mark.parametrize("text,message", [
    ("[camera]\nwidht = 4056\n", "camera.widht: unknown key"),
    ("[session]\nretake_window_s = 'long'\n", "session.retake_window_s: expected a number"),
    ("[trigger]\npin = 17.5\n", "trigger.pin: expected an integer"),
    ("[camera]\ncolour_gains = [1.5]\n", "camera.colour_gains: expected 2 values"),
    ("[camera]\nbackend = 'usb'\n", "camera.backend"),
    ("[light]\nshot = 1.5\n", "light: levels"),
    ("kit_id = 'kit 1'\n", "kit_id"),
    ("[[readers]]\ntype = 'sim'\nport = 3\n", "readers[0].port: unknown key"),
    ("[camera\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as exc:
        config.load(write(tmp_path, text))
    assert str(tmp_path / "kit.toml") in str(exc.value)


def test_env_and_overrides(tmp_path, monkeypatch):
    p = write(tmp_path, "kit_id = 'kit-07'\n[[readers]]\ntype = 'pcsc'\noptions = { profile = 'uid' }\n")
    monkeypatch.setenv(config.ENV_PATH, str(p))
    cfg = config.load(None, data_dir=str(tmp_path / "d"))
    assert cfg.kit_id == "kit-07" and cfg.data_dir == str(tmp_path / "d")
    assert cfg.readers[0].type == "pcsc" and cfg.readers[0].options == {"profile": "uid"}
    monkeypatch.setenv(config.ENV_PATH, str(tmp_path / "missing.toml"))
    with pytest.raises(config.ConfigError, match="no such configuration file"):
        config.load(None)


@pytest.mark.parametrize("text,message", [
    ("[camera]\ntimeout_s = 0\n", "camera.timeout_s: must be greater than 0"),
    ("[camera]\ntimeout_s = nan\n", "camera.timeout_s: must be a finite number"),
    ("[session]\nready_timeout_s = inf\n", "session.ready_timeout_s: must be a finite number"),
    ("[session]\ncapture_timeout_s = -1\n", "session.capture_timeout_s: must be greater than 0"),
    ("[trigger]\npin = 28\n", "trigger.pin: must be a BCM GPIO number 0..27"),
    ("[buzzer]\npin = -1\n", "buzzer.pin: must be a BCM GPIO number"),
    ("[buzzer]\npin = 17\n", "buzzer.pin: GPIO 17 is already used by trigger.pin"),
    ("[camera]\nwidth = 0\n", "camera.width: must be greater than 0"),
    ("[camera]\nmax_failures = 0\n", "camera.max_failures: must be at least 1"),
    ("[camera]\ncolour_gains = [0.0, 1.5]\n", "camera.colour_gains"),
    ("log_level = 'LOUD'\n", "log_level: must be DEBUG"),
    ("[sync]\nparallel_uploads = 0\n", "sync.parallel_uploads: must be 1..8"),
    ("[sync]\nparallel_uploads = 9\n", "sync.parallel_uploads: must be 1..8"),
    ("[makeup_qr]\npublic_keys = ['not base64!']\n", "makeup_qr.public_keys: each must be a base64"),
    ("[makeup_qr]\npublic_keys = ['AAAA']\n", "makeup_qr.public_keys: each must be a base64 Ed25519 public key"),
    ("[makeup_qr]\nrevoked = ['xyz']\n", "makeup_qr.revoked: each must be a code id in hex"),
    ("[qc]\nface_size_pass = [0.4, 0.1]\n", "qc.face_size_pass: must be [low, high]"),
    ("[storage]\nmin_free_mb = -5\n", "storage.min_free_mb: must not be negative"),
    ("[privacy]\nconsole_device = '/var/log/names.txt'\n", "privacy.console_device: must be a terminal device"),
])
def test_every_number_has_a_range(tmp_path, text, message):
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(write(tmp_path, text))


def test_a_bom_is_accepted_and_undecodable_bytes_are_a_clear_error(tmp_path):
    p = tmp_path / "kit.toml"
    p.write_bytes(b"\xef\xbb\xbfkit_id = 'kit-bom'\n")
    assert config.load(p).kit_id == "kit-bom"
    p.write_bytes("kit_id = '一号机'\n".encode("gb18030"))
    with pytest.raises(config.ConfigError, match=r"not UTF-8 text.*save it as UTF-8"):
        config.load(p)


def test_config_command_enforces_ranges_in_one_line(tmp_path):
    import subprocess
    import sys

    p = write(tmp_path, "[trigger]\npin = 99\n")
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "--config", str(p), "config"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "trigger.pin" in out.stderr
