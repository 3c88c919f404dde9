"""Local prerequisites: a command that needs a program on this machine says so before
connecting (exit 2, the apt package that ships it), and the version is one string."""

from importlib.metadata import version

import pytest
from click.testing import CliRunner

import provision
from provision import local, remote
from provision.cli import cli


@pytest.fixture(autouse=True)
def no_connections(monkeypatch):
    def refuse(self):
        raise AssertionError(f"a connection was opened to {self.connection.host}")

    monkeypatch.setattr(remote.SSHRemote, "open", refuse)
    monkeypatch.setattr(local.LocalRemote, "open", refuse)


@pytest.mark.parametrize("command", ["push", "pull"])
def test_sync_without_rsync_or_ssh_is_refused_before_connecting(command, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # neither rsync nor ssh on PATH
    args = ["./data", "/data"] if command == "push" else ["/data", "./here"]
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [command, "--host", "me@192.0.2.7:22", *args])
    assert result.exit_code == 2, result.output
    # Debian ships rsync in `rsync` and /usr/bin/ssh in `openssh-client` (dpkg -S /usr/bin/ssh)
    assert "rsync, ssh" in result.output
    assert "apt-get install openssh-client rsync" in result.output


def test_sync_with_ssh_missing_names_only_ssh(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "rsync"
    fake.write_text("#!/bin/sh\necho 'rsync  version 3.2.7  protocol version 31'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["push", "--host", "me@192.0.2.7:22", "./data", "/d"])
    assert result.exit_code == 2, result.output
    assert "needs ssh on this machine" in result.output
    assert "openssh-client" in result.output and "install rsync" not in result.output


def test_version_is_the_distribution_metadata_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    # The installed distribution's metadata (built by hatch from provision/__init__.py)
    assert result.output.strip() == f"provision, version {version('provision-dl')}"
    assert provision.__version__ == version("provision-dl")
