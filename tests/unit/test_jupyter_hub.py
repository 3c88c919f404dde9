"""jupyter's hub mode (provision/steps/jupyter_hub.py): what check plans on a fresh host, the
config JupyterHub reads (its trait names and values as JupyterHub 6.1 and
jupyterhub-systemdspawner 1.0.2 document them), who may log in, and the limits' units."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fakes import FakeRemote
from provision.facts import parse_facts
from provision.step import Context
from provision.steps import conda, jupyter, jupyter_hub, pytorch, users
from provision.steps.jupyter_hub_verify import bytes_of, seconds_of
from provision.templates import render

DATA = Path(__file__).parent.parent / "data" / "facts"
PASSWD = "tester:x:1000:1000::/home/tester:/bin/bash\ntester\n"
HUB_CONFIG_VARS = {
    "allowed": "{'alice', 'bob'}",
    "admins": "{'alice'}",
    "proxy_port": 8888,
    "api_port": 8889,
    "hub_port": 8890,
    "state": "/var/lib/provision/jupyterhub",
    "cookie_secret": "/var/lib/provision/jupyterhub/jupyterhub_cookie_secret",
    "proxy": "/usr/bin/configurable-http-proxy",
    "singleuser": "/opt/provision/jupyterhub/bin/jupyterhub-singleuser",
    "mem_limit": "'8G'",
    "cpu_limit": "2.0",
}
TEMPLATE_EXAMPLES = {
    "jupyter/jupyterhub_config.py.j2": HUB_CONFIG_VARS,
    "jupyter/provision-jupyterhub.service.j2": {
        "venv": "/opt/provision/jupyterhub",
        "config": "/etc/provision/jupyterhub/jupyterhub_config.py",
        "state": "/var/lib/provision/jupyterhub",
    },
}


class Traits:
    """What JupyterHub's get_config() returns, as far as a config file sets it: Class.trait."""

    def __init__(self):
        self.__dict__["set"] = {}

    def __getattr__(self, cls):
        owner = self

        class Section:
            def __setattr__(self, name, value):
                owner.set[f"{cls}.{name}"] = value

        return Section()


def loaded(text: str) -> dict:
    traits = Traits()
    exec(compile(text, "jupyterhub_config.py", "exec"), {"get_config": lambda: traits})
    return traits.set


def test_the_config_is_python_jupyterhub_loads_with_loopback_pam_and_the_spawner():
    got = loaded(render("jupyter/jupyterhub_config.py.j2", **HUB_CONFIG_VARS).decode())
    assert got["JupyterHub.bind_url"] == "http://127.0.0.1:8888"
    assert got["ConfigurableHTTPProxy.api_url"] == "http://127.0.0.1:8889"
    assert got["JupyterHub.hub_bind_url"] == "http://127.0.0.1:8890"
    assert got["JupyterHub.authenticator_class"] == "pam"  # JupyterHub's entry point name
    # jupyterhub-systemdspawner 1.0.2's entry_points.txt: systemdspawner = SystemdSpawner
    assert got["JupyterHub.spawner_class"] == "systemdspawner"
    assert got["Authenticator.allowed_users"] == {"alice", "bob"}
    assert got["Authenticator.admin_users"] == {"alice"}
    assert got["SystemdSpawner.mem_limit"] == "8G" and got["SystemdSpawner.cpu_limit"] == 2.0
    assert got["Spawner.cmd"] == ["/opt/provision/jupyterhub/bin/jupyterhub-singleuser"]
    assert got["JupyterHub.cookie_secret_file"].startswith("/var/lib/provision/jupyterhub/")
    assert got["JupyterHub.db_url"] == "sqlite:////var/lib/provision/jupyterhub/jupyterhub.sqlite"


def context(remote, jp, accounts=("alice", "bob"), user="tester") -> Context:
    f = dataclasses.replace(parse_facts((DATA / "debian-12-nspawn.txt").read_text()), user=user)
    settings = {
        "jupyter": jp,
        "pytorch": pytorch.Settings(enabled=True),
        "conda": conda.Settings(enabled=False),
        "users": users.Settings(accounts=accounts),
    }
    ctx = Context("box", f, settings, gathered={}, strict=True)
    return dataclasses.replace(ctx, gathered=remote.read_all(jupyter.STEP.reads(ctx), f.user))


def fresh():
    r = FakeRemote().on(r"getent passwd tester", f"{PASSWD}@@notebook_dir\n@@kernels\n")
    r.on(r"importlib.metadata as m\nfor", (1, "")).on(
        r"stat -c .* -- /var/lib/provision/jupyterhub", (1, "")
    )
    r.on(r'version\("ipykernel"\)', (1, "")).on(r"sha256sum -- ", (1, ""))
    r.on(r"dpkg-query", (1, ""))
    r.on(r"systemctl show", "UnitFileState=\nActiveState=inactive\n")
    # the lab mode's service, from an earlier run in lab mode
    return r.on(r"systemctl show .*provision-jupyter.service",
                "UnitFileState=enabled\nActiveState=active\n")  # fmt: skip


def test_a_fresh_host_in_hub_mode_gets_the_hub_and_loses_the_lab_service():
    jp = jupyter.Settings(enabled=True, mode="hub", hub_mem_limit="4G", hub_cpu_limit=1.5)
    changes = [c.summary for c in jupyter.check(context(fresh(), jp))]
    assert changes[:2] == [
        "disable provision-jupyter.service at boot",
        "stop provision-jupyter.service",
    ], changes
    assert (
        "install JupyterHub 6.1.1, jupyterhub-systemdspawner 1.0.2 and JupyterLab 4.6.6 into "
        "/opt/provision/jupyterhub" in changes
    )
    for line in (
        "create /var/lib/provision/jupyterhub (0700, root: the hub's database and secret)",
        "write /etc/provision/jupyterhub/jupyterhub_config.py",
        "write /etc/systemd/system/provision-jupyterhub.service",
        "enable provision-jupyterhub.service at boot",
        "start provision-jupyterhub.service",
        "write /usr/local/share/jupyter/kernels/provision-dl/kernel.json",
    ):
        assert line in changes, changes
    assert any("node-configurable-http-proxy" in c for c in changes), changes
    assert not any("token" in c for c in changes), "hub mode makes no JupyterLab token"


def test_who_may_log_in_defaults_to_the_accounts_and_the_login_user_never_root():
    jp = jupyter.Settings(enabled=True, mode="hub")
    ctx = context(fresh(), jp)
    assert jupyter_hub.users(ctx, jp) == (["alice", "bob", "tester"], ["tester"])
    as_root = context(FakeRemote(), jupyter.Settings(), user="root")
    assert jupyter_hub.users(as_root, jp) == (["alice", "bob"], [])
    chosen = dataclasses.replace(jp, allowed_users=("bob",), admin_users=("carol",))
    assert jupyter_hub.users(ctx, chosen) == (["bob", "carol"], ["carol"])  # admins may log in


def test_the_config_lists_are_sorted_so_a_second_run_renders_the_same_file():
    assert jupyter_hub.python_set(["tester", "alice", "bob"]) == "{'alice', 'bob', 'tester'}"
    assert jupyter_hub.python_set([]) == "set()"


def test_limits_in_the_units_jupyterhub_and_systemd_use():
    # JupyterHub's ByteSpecification: K, M, G, T are powers of 1024.
    assert bytes_of("8G") == 8 * 1024**3 and bytes_of("512M") == 512 * 1024**2
    # systemctl show prints CPUQuotaPerSecUSec as a time span (systemd.time(7)).
    assert seconds_of("1.500000s") == 1.5 and seconds_of("500ms") == 0.5
    assert seconds_of("2s") == 2.0 and seconds_of("infinity") is None


def converged_hub(versions: str):
    r = fresh()
    r.on(r"importlib.metadata as m\nfor", versions)
    return r


def test_a_new_pinned_hub_version_is_a_plan_line_naming_what_the_venv_has():
    jp = jupyter.Settings(enabled=True, mode="hub", hub_version="6.1.2")
    have = "jupyterhub 6.1.1\njupyterhub-systemdspawner 1.0.2\njupyterlab 4.6.6\n"
    changes = [c.summary for c in jupyter.check(context(converged_hub(have), jp))]
    assert (
        "install JupyterHub 6.1.2, jupyterhub-systemdspawner 1.0.2 and JupyterLab 4.6.6 into "
        "/opt/provision/jupyterhub (the venv has jupyterhub 6.1.1)" in changes
    ), changes
    same = jupyter.Settings(enabled=True, mode="hub")
    changes = [c.summary for c in jupyter.check(context(converged_hub(have), same))]
    assert not any(c.startswith("install JupyterHub") for c in changes), changes
