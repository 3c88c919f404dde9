"""Every template renders with StrictUndefined; a missing variable is an error."""

import importlib
from pathlib import Path

import pytest

from provision.errors import TemplateError
from provision.templates import all_templates, render

EXAMPLES = {
    "base/provision.sources.j2": {
        "mirror": "http://deb.debian.org/debian",
        "security_mirror": "http://s/debian-security",
        "suites": ["bookworm", "bookworm-updates"],
        "security_suite": "bookworm-security",
        "components": ["main"],
        "keyring": "/usr/share/keyrings/debian-archive-keyring.gpg",
    },
    "base/sources.list.j2": {},
    "base/timesyncd.conf.j2": {"ntp_servers": ["ntp1.example.org"]},
    "base/51provision-unattended-upgrades.j2": {"blocklist": ["nvidia-"]},
    "base/52provision-periodic.j2": {"enabled": True},
    "base/99provision-proxy.j2": {"proxy": "http://10.0.0.5:3142", "https_proxy": ""},
    "base/pip.conf.j2": {
        "index_url": "http://10.0.0.5:3141/simple/",
        "trusted_host": "10.0.0.5:3141",
    },
    "base/acng-provision.conf.j2": {"port": 3142, "bind": ["127.0.0.1"]},
    "users/sudoers.j2": {"name": "alice"},
    "autostart/logind.conf.j2": {},
    "ssh/fail2ban-sshd.conf.j2": {"port": 22, "max_retry": 5, "ban_time_s": 600},
    "ssh/resolved-no-multicast.conf.j2": {},
    "network/60-provision.yaml.j2": {
        "id": "enp5s0",
        "interface": "enp5s0",
        "mac": "",
        "address": "192.168.1.50/24",
        "gateway": "192.168.1.1",
        "dns": ["1.1.1.1"],
        "search": ["lab"],
        "wakeonlan": True,
    },
    "tensorboard/provision-tensorboard.service.j2": {
        "user": "alice",
        "group": "alice",
        "logdir": "/home/alice/runs",
        "port": 6006,
        "bind_all": False,
        "tensorboard": "/opt/provision/tensorboard/bin/tensorboard",
    },
    "autostart/wol.link.j2": {"interface": "enp5s0", "mac": "52:54:00:12:34:56"},
    "ssh/00-provision.conf.j2": {
        "port": 22,
        "permit_root_login": "no",
        "password_authentication": False,
        "x11_forwarding": False,
        "max_auth_tries": 3,
        "allow_users": ["alice"],
        "allow_groups": [],
    },
}


def _step_examples() -> dict:
    """Steps' own test modules may hold their templates' examples as TEMPLATE_EXAMPLES."""
    found = {}
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        if path.name != Path(__file__).name and "TEMPLATE_EXAMPLES" in path.read_text():
            module = importlib.import_module(path.stem)
            found.update(getattr(module, "TEMPLATE_EXAMPLES", {}))
    return found


EXAMPLES.update(_step_examples())


def test_every_template_has_an_example():
    assert sorted(EXAMPLES) == all_templates()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_template_renders_with_a_managed_header(name):
    text = render(name, **EXAMPLES[name]).decode()
    assert f"Managed by provision ({name})" in text


def test_template_missing_variable_is_an_error():
    with pytest.raises(TemplateError) as info:
        render("base/timesyncd.conf.j2")
    assert "templates/base/timesyncd.conf.j2" in info.value.message
