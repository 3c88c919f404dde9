"""ssh-config and wake: local commands, no connection to the box."""

import socket

import pytest
from click.testing import CliRunner

from provision import sshconfig, wol
from provision.cli import cli

INV = "[g]\nbox ansible_host=10.0.0.5 ansible_user=me ansible_port=2200 provision_mac=52:54:00:12:34:56\n"


def run(args, tmp_path, inventory=INV):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        with open("inventory.ini", "w") as f:
            f.write(inventory)
        return runner.invoke(cli, args)


def test_ssh_config_prints_a_host_entry(tmp_path):
    result = run(["ssh-config", "--host", "box"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "Host box\n    HostName 10.0.0.5\n    User me\n    Port 2200\n" in result.output
    assert "    LocalForward 127.0.0.1:6006 127.0.0.1:6006\n" in result.output


def test_ssh_config_write_is_idempotent_and_keeps_other_entries(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host other\n    HostName 1.2.3.4\n")
    first = run(["ssh-config", "--host", "box", "--write", "--config-file", str(cfg)], tmp_path)
    assert "updated" in first.output
    text = cfg.read_text()
    assert text.startswith("Host other\n") and "Host box" in text
    second = run(["ssh-config", "--host", "box", "--write", "--config-file", str(cfg)], tmp_path)
    assert "unchanged" in second.output and cfg.read_text() == text
    moved = INV.replace("10.0.0.5", "10.0.0.9")
    run(["ssh-config", "--host", "box", "--write", "--config-file", str(cfg)], tmp_path, moved)
    assert cfg.read_text().count("Host box\n") == 1 and "10.0.0.9" in cfg.read_text()
    assert (tmp_path / "ssh_config.provision-bak").read_text() == text
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"


def test_merge_replaces_only_its_block():
    a = "# >>> provision a >>>\nHost a\n# <<< provision a <<<\n"
    text = sshconfig.merge("", "a", a)
    text = sshconfig.merge(text, "b", a.replace(" a", " b"))
    new_a = a.replace("Host a", "Host a\n    Port 2")
    assert sshconfig.merge(text, "a", new_a) == new_a + "\n" + a.replace(" a", " b")


def test_magic_packet_layout():
    packet = wol.magic_packet("52:54:00:12:34:56")
    assert len(packet) == 102 and packet[:6] == b"\xff" * 6
    assert packet[6:12] == bytes.fromhex("525400123456") and packet[6:] == packet[6:12] * 16
    assert wol.magic_packet("52-54-00-12-34-56") == wol.magic_packet("525400123456") == packet
    with pytest.raises(ValueError):
        wol.magic_packet("52:54:00:12:34")


def test_wake_sends_the_packet_to_a_local_listener(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]
        result = run(
            ["wake", "--host", "box", "--broadcast", "127.0.0.1", "--port", str(port)], tmp_path
        )
        assert result.exit_code == 0, result.output
        data, _ = listener.recvfrom(200)
    assert data == wol.magic_packet("52:54:00:12:34:56")


@pytest.mark.parametrize(
    ("inventory", "args", "words"),
    [
        ("[g]\nbox provision_mac=zz:zz\n", [], "inventory.ini:2: provision_mac"),
        ("[g]\nbox\n", [], "no MAC address for box"),
        ("[g]\nbox\n", ["--mac", "nope"], "not a MAC address"),
    ],
)
def test_wake_bad_mac_exits_2(tmp_path, inventory, args, words):
    result = run(["wake", "--host", "box", "--broadcast", "127.0.0.1", *args], tmp_path, inventory)
    assert result.exit_code == 2 and words in result.output
