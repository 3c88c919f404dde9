"""Settings: precedence, provenance, coercion, validation with file:line."""

from pathlib import Path

import pytest

from provision.config import load_hosts, load_toml
from provision.errors import ConfigError
from provision.inventory import parse


def hosts(text, patterns=("box",), **kwargs):
    return load_hosts(parse(text, Path("inventory.ini")), list(patterns), **kwargs)


def test_config_precedence_and_sources(tmp_path):
    toml = tmp_path / "provision.toml"
    toml.write_text(
        '[base]\napt_cache_max_age_s = 10\nextra_packages = ["nvtop"]\ntime_sync = false\n'
    )
    text = (
        "[all:vars]\nbase.apt_cache_max_age_s=20\nbase.extra_packages=ncdu\n"
        "[gpu]\nbox base.extra_packages=iotop,tree\n[gpu:vars]\nbase.apt_cache_max_age_s=30\n"
    )
    (hc,) = hosts(text, toml=load_toml(toml), overrides=["base.apt_lock_timeout_s=5"])
    s = hc.settings["base"]
    assert s.apt_cache_max_age_s == 30
    assert hc.sources["base.apt_cache_max_age_s"] == "inventory.ini:7"
    assert s.extra_packages == ("iotop", "tree")
    assert hc.sources["base.extra_packages"] == "inventory.ini:5"
    assert s.time_sync is False
    assert hc.sources["base.time_sync"] == f"{toml}:4"
    assert s.apt_lock_timeout_s == 5
    assert hc.sources["base.apt_lock_timeout_s"] == "--set base.apt_lock_timeout_s"
    assert hc.sources["base.kernel_headers"] == "default"


def test_config_connection_from_ansible_vars(tmp_path):
    key = tmp_path / "id"
    key.write_text("k")
    key.chmod(0o600)  # OpenSSH's rule: a key others can read is refused
    (hc,) = hosts(
        f"[g]\nbox ansible_host=10.1.2.3 ansible_port=2222 ansible_user=me "
        f"ansible_ssh_private_key_file={key}\n"
    )
    c = hc.connection
    assert (c.addr, c.port, c.user, c.key_file, c.local) == (
        "10.1.2.3",
        2222,
        "me",
        str(key),
        False,
    )


def test_config_ad_hoc_host_needs_no_inventory_entry():
    (hc,) = hosts("", patterns=["ubuntu@127.0.0.1:2222"])
    assert (hc.connection.user, hc.connection.addr, hc.connection.port) == (
        "ubuntu",
        "127.0.0.1",
        2222,
    )


def test_config_child_group_beats_parent():
    text = "[gpu]\nbox\n[lab:children]\ngpu\n[lab:vars]\nbase.time_sync=true\n[gpu:vars]\nbase.time_sync=false\n"
    (hc,) = hosts(text)
    assert hc.settings["base"].time_sync is False


@pytest.mark.parametrize(
    ("text", "overrides", "where", "words"),
    [
        (
            "[g]\nbox base.apt_cach_max_age_s=1\n",
            [],
            "inventory.ini:2",
            "did you mean 'base.apt_cache_max_age_s'",
        ),
        ("[g]\nbox bsae.time_sync=1\n", [], "inventory.ini:2", "did you mean 'base.time_sync'"),
        ("[g]\nbox base.time_sync=maybe\n", [], "inventory.ini:2", "not a boolean"),
        ("[g]\nbox base.apt_lock_timeout_s=ten\n", [], "inventory.ini:2", "not an integer"),
        ("[g]\nbox base.apt_lock_timeout_s=0\n", [], "inventory.ini:2", "greater than 0"),
        (
            "[g]\nbox base.extra_packages='htop;reboot'\n",
            [],
            "inventory.ini:2",
            "not a Debian package",
        ),
        ("[g]\nbox base.extra_packages=-oAPT::x\n", [], "inventory.ini:2", "not a Debian package"),
        ("[g]\nbox base.extra_packages=a,,b\n", [], "inventory.ini:2", "empty item"),
        ("[g]\nbox base.apt_mirror='http://x/$(id)'\n", [], "inventory.ini:2", "not an http"),
        ("[g]\nbox base.ntp_servers=`id`\n", [], "inventory.ini:2", "not a host name"),
        ("[g]\nbox base.ca_certificates=/nonexistent.crt\n", [], "inventory.ini:2", "not found"),
        ("[g]\nbox ansible_port=99999\n", [], "inventory.ini:2", "out of range"),
        ("[g]\nbox ansible_host='-oProxyCommand=x'\n", [], "inventory.ini:2", "not a host name"),
        ("[g]\nbox ansible_user='root;id'\n", [], "inventory.ini:2", "not a user name"),
        ("[g]\nbox ansible_connection=winrm\n", [], "inventory.ini:2", "not supported"),
        (
            "[g]\nbox ansible_ssh_private_key_file=/no/such/key\n",
            [],
            "inventory.ini:2",
            "not found",
        ),
        ("[g]\nbox ansible_hots=1.2.3.4\n", [], "inventory.ini:2", "did you mean 'ansible_host'"),
        ("[g]\nbox\n", ["base.nope=1"], "--set base.nope", "unknown setting"),
        ("[g]\nbox\n", ["nodot=1"], "--set nodot", "only step.field"),
        (
            "[a]\nbox\n[b]\nbox\n[a:vars]\nbase.time_sync=true\n[b:vars]\nbase.time_sync=false\n",
            [],
            "inventory.ini:8",
            "from group 'a'",
        ),
    ],
)
def test_config_errors_name_where(text, overrides, where, words):
    with pytest.raises(ConfigError) as info:
        hosts(text, overrides=overrides)
    assert info.value.message.startswith(where + ": "), info.value.message
    assert words in info.value.message + " " + info.value.hint


def test_config_toml_errors_name_the_line(tmp_path):
    toml = tmp_path / "provision.toml"
    toml.write_text("[base]\n\ntime_sync = 3\n")
    with pytest.raises(ConfigError) as info:
        hosts("[g]\nbox\n", toml=load_toml(toml))
    assert info.value.message.startswith(f"{toml}:3: ")


@pytest.mark.parametrize(
    ("addr", "ok"),
    [
        ("10.0.0.5", True),
        ("[::1]", True),
        ("box.lan", True),
        ("10.0.0.300", False),  # RFC 1123/3696: all-numeric top label is never a name
        ("10.0.0.999", False),
        ("10.1", False),
        ("[box]", False),
        ("-oProxyCommand=x", False),
        ("box-.lan", False),
    ],
)
def test_config_address_rules_before_any_lookup(addr, ok):
    text = f"[g]\nbox ansible_host={addr}\n"
    if ok:
        (hc,) = hosts(text)
        assert hc.connection.addr == addr.strip("[]")
    else:
        with pytest.raises(ConfigError) as err:
            hosts(text)
        assert err.value.where == "inventory.ini:2" and err.value.hint


@pytest.mark.parametrize(
    ("line", "where_key"),
    [
        ("ssh.port=6006", "two services"),
        ("network.gateway=192.168.1.1", "network.interface is not"),
        ("cuda.version=99.9", "unknown CUDA toolkit"),
        ("pytorch.index=cu999", "unknown wheel index"),
        ("driver.branch=535 pytorch.index=cu130", "cannot go together"),
    ],
)
def test_config_rules_between_fields_are_refused_offline(line, where_key):
    with pytest.raises(ConfigError) as err:
        hosts(f"[g]\nbox {line}\n")
    assert where_key in err.value.message and err.value.hint
    assert err.value.where == "inventory.ini:2"


def test_config_conversion_error_gives_an_example():
    with pytest.raises(ConfigError) as err:
        hosts("[g]\nbox driver.branch=banana\n")
    assert "e.g. driver.branch=580" in err.value.message


def test_config_key_readable_by_others_is_refused(tmp_path):
    key = tmp_path / "id"
    key.write_text("k")
    key.chmod(0o640)
    with pytest.raises(ConfigError) as err:
        hosts(f"[g]\nbox ansible_ssh_private_key_file={key}\n")
    assert "UNPROTECTED PRIVATE KEY FILE" in err.value.message
    assert err.value.hint == f"chmod 600 {key}"
