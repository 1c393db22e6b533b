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
