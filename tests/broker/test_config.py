"""Broker configuration: TOML, environment overrides, refusal of unknown keys, docs in step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from veritee.broker.config import Config, ConfigError, load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"


def test_defaults_without_a_file() -> None:
    config = load_config(None, env={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.store_url.startswith("sqlite:///") and config.store_url.endswith("veritee.db")
    assert config.development
    assert config.verification.trust_emulated is False


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text('data_dir = "/srv/veritee"\n[server]\nport = 9000\nworkers = 2\n'
                    '[verification]\ncollateral = ["/etc/amd"]\n'
                    '[[admin.acl]]\nrole = "ops"\nallowed = "^/kbs/v0/audit$"\n')
    env = {"VERITEE_SERVER_PORT": "9100", "VERITEE_STORE_URL": "postgresql+psycopg://db/kbs",
           "VERITEE_VERIFICATION_OFFLINE": "true", "UNRELATED": "x"}
    config = load_config(path, env=env)
    assert config.server.port == 9100 and config.server.workers == 2
    assert config.store_url == "postgresql+psycopg://db/kbs"
    assert config.verification.offline is True
    assert config.verification.collateral == ("/etc/amd",)
    assert config.admin.acl[0].role == "ops"
    assert str(config.data_path) == "/srv/veritee"


@pytest.mark.parametrize("text", [
    "[sever]\nport = 1\n",              # unknown section
    "[server]\nprot = 1\n",             # unknown key
    "[server]\nport = \"8080\"\n",      # wrong type
    "[server]\nport = true\n",          # a bool is not an int
    "[admin]\nacl = [{role = \"x\"}]\n",  # incomplete ACL entry
    "[server\n",                        # not TOML
])
def test_bad_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_bad_environment_values_are_refused() -> None:
    with pytest.raises(ConfigError):
        load_config(None, env={"VERITEE_SERVER_PORT": "eighty"})
    with pytest.raises(ConfigError):
        load_config(None, env={"VERITEE_VERIFICATION_OFFLINE": "maybe"})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.toml", env={})


def test_every_key_is_documented() -> None:
    doc = DOC.read_text()
    for section in dataclasses.fields(Config):
        if section.name == "data_dir":
            assert "data_dir =" in doc
            continue
        assert f"[{section.name}]" in doc, section.name
        for key in dataclasses.fields(section.default_factory()):  # type: ignore[misc]
            documented = f"{key.name} =" in doc or f"[[{section.name}.{key.name}]]" in doc
            assert documented, f"[{section.name}] {key.name} is not in CONFIG.md"


def test_mirrors_and_revocation_settings_are_checked() -> None:
    from veritee.broker.config import PolicyConfig, VerificationConfig

    good = VerificationConfig(mirrors=("https://kdsintf.amd.com=http://mirror:8080",))
    assert good.mirror_pairs() == (("https://kdsintf.amd.com", "http://mirror:8080"),)
    with pytest.raises(ConfigError, match="mirrors entry"):
        VerificationConfig(mirrors=("kdsintf.amd.com",)).mirror_pairs()
    online = Config(verification=VerificationConfig(offline=False))
    offline = Config(verification=VerificationConfig(offline=True))
    assert online.require_revocation and not offline.require_revocation
    assert Config(policy=PolicyConfig(require_revocation="true"),
                  verification=VerificationConfig(offline=True)).require_revocation
    with pytest.raises(ConfigError, match="require_revocation"):
        _ = Config(policy=PolicyConfig(require_revocation="maybe")).require_revocation


def test_the_effective_configuration_round_trips(tmp_path: Path) -> None:
    """Workers start from the TOML the supervisor writes: every setting must survive it."""
    from veritee.broker.config import AclEntry, AdminConfig, LimitsConfig, dump_config

    config = Config(data_dir=str(tmp_path), limits=LimitsConfig(
        sessions_per_minute=0, trusted_proxies=("10.0.0.0/8", "::1")),
        admin=AdminConfig(acl=(AclEntry("ops", r"^/kbs/v0/audit$"),)))
    path = tmp_path / "effective.toml"
    path.write_text(dump_config(config))
    assert load_config(path, env={}) == config
