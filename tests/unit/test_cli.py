"""The CLI: list, config, and bad input → exit 2 with file:line, no connection opened."""

import pytest
from click.testing import CliRunner

from provision import local, remote
from provision.cli import cli


@pytest.fixture(autouse=True)
def no_connections(monkeypatch):
    """Any attempt to open a connection fails the test."""
    opened = []

    def refuse(self):
        opened.append(self.connection.host)
        raise AssertionError(f"a connection was opened to {self.connection.host}")

    monkeypatch.setattr(remote.SSHRemote, "open", refuse)
    monkeypatch.setattr(local.LocalRemote, "open", refuse)
    return opened


def invoke(args, inventory_text=None, tmp_path=None):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        if inventory_text is not None:
            with open("inventory.ini", "w") as f:
                f.write(inventory_text)
        return runner.invoke(cli, args)


def test_cli_list_shows_steps_in_order():
    result = invoke(["list"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("base ")


def test_cli_config_shows_values_and_sources(tmp_path):
    result = invoke(["config", "--host", "box"], "[gpu]\nbox base.time_sync=false\n", tmp_path)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "base.time_sync" in x)
    assert "False" in line and "inventory.ini:2" in line


BAD = [
    (["all", "--host", "box"], "[gpu]\nbox base.tim_sync=1\n", "inventory.ini:2"),
    (["all", "--host", "box"], "[gpu\nbox\n", "inventory.ini:1"),
    (["all", "--host", "nobox"], "[gpu]\nbox\n", "unknown host or group 'nobox'"),
    (
        ["all", "--host", "box", "--set", "base.packages=$(reboot)"],
        "[g]\nbox\n",
        "--set base.packages",
    ),
    (
        ["all", "--host", "box", "--detailed-exitcode"],
        "[g]\nbox\n",
        "--detailed-exitcode needs --plan",
    ),
    (["base", "--host", "box"], "[g]\nbox ansible_port=0\n", "inventory.ini:2"),
    (["verify", "--host", "box", "nosuchstep"], "[g]\nbox\n", "unknown step 'nosuchstep'"),
    (["facts", "--host", "box", "-i", "missing.ini"], None, "missing.ini not found"),
    (["all"], "[g]\nbox\n", "Missing option '--host'"),
    (["all", "--host", "box", "--parallel", "0"], "[g]\nbox\n", "--parallel"),
]


@pytest.mark.parametrize(("args", "inventory", "words"), BAD)
def test_cli_bad_input_exits_2_without_connecting(args, inventory, words, tmp_path, no_connections):
    result = invoke(args, inventory, tmp_path)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert no_connections == []


def test_cli_error_has_a_hint_and_no_traceback(tmp_path):
    result = invoke(["all", "--host", "box"], "[g]\nbox base.time_sync=maybe\n", tmp_path)
    assert "error: inventory.ini:2: base.time_sync" in result.output
    assert "Traceback" not in result.output
