"""The `jaga-hub` command line, run as a real process."""

from __future__ import annotations

from pathlib import Path

from tests.kit import hub_settings, run_cli, write_config


def test_stations_list_and_token_prints_token_alone_on_last_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    listing = run_cli(config, "stations", "list")
    assert listing.returncode == 0
    assert "35.09.01.2001\tdesa\tJombang\tpublic\tDesa Padomasan" in listing.stdout
    minted = run_cli(config, "stations", "token", "35.09.01")
    assert minted.returncode == 0
    token = minted.stdout.strip().splitlines()[-1]
    assert len(token) >= 40 and " " not in token
    database = (tmp_path / "data" / "jaga.db").read_bytes()
    assert token.encode() not in database  # only the hash is stored
    unknown = run_cli(config, "stations", "token", "35.09.77")
    assert unknown.returncode == 2 and "no station" in unknown.stderr


def test_import_reports_every_bad_line_and_changes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    before = (tmp_path / "stations.csv").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,kind,kecamatan,public\n35.09.01,Kec,kecamatan,Jombang,true\n"
                   "35.09.01,Dup,kecamatan,Jombang,true\nxx,Bad id,desa,Jombang,true\n"
                   "35.09.03,No kind,planet,Jombang,true\n35.09.04,Too,many,cols,true,extra\n")
    result = run_cli(config, "stations", "import", str(bad))
    assert result.returncode == 2
    for line in (3, 4, 5, 6):
        assert f"line {line}:" in result.stderr
    assert (tmp_path / "stations.csv").read_text() == before
    good = tmp_path / "good.csv"
    good.write_text("id,name,kind,kecamatan,public\n35.09.05,Kecamatan Baru,kecamatan,Baru,false\n")
    assert run_cli(config, "stations", "import", str(good)).returncode == 0
    assert "35.09.05\tkecamatan\tBaru\tprivate" in run_cli(config, "stations", "list").stdout


def test_operators_add_with_password_stdin(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert run_cli(config, "operators", "add", "sari", "--password-stdin", stdin="cukup-panjang\n").returncode == 0
    short = run_cli(config, "operators", "add", "sari", "--password-stdin", stdin="pendek\n")
    assert short.returncode == 2 and "at least 8" in short.stderr


def test_unknown_config_key_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[hub]\nprot = 8080\n")
    result = run_cli(config, "stations", "list")
    assert result.returncode == 2 and "hub.prot" in result.stderr
    config.write_text("[presence]\nheartbeat_s = 'soon'\n")
    assert "presence.heartbeat_s must be float" in run_cli(config, "stations", "list").stderr


def test_settings_defaults_are_sane(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path)
    assert settings.schedule.timezone == "Asia/Jakarta"
    assert settings.media.ice_servers == ()
