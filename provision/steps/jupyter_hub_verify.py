"""jupyter's verify checks in hub mode: probes that run on the box as root (the hub's service,
its three loopback listeners, its version and a PAM refusal over HTTP, the limits of running
user servers, the kernels the user servers see, the hub's secret); each prints what it found,
never a secret. A login that succeeds needs an account's password, which provision never
holds: the container tier logs in for real (tests/container/test_jupyter_on_container.py).

Functions here take the jupyter step's Settings (`s`), which is not imported.
"""

from __future__ import annotations

import re

from provision import shell
from provision.errors import Skip
from provision.steps.jupyter_hub import (
    COOKIE_SECRET,
    HUB_CONFIG,
    HUB_STATE,
    HUB_UNIT,
    HUB_UNIT_FILE,
    HUB_VENV,
    ports,
)
from provision.steps.jupyter_verify import UNIT, check_kernels, listen_addresses
from provision.unitstate import enabled_state, not_enabled_message

USER_UNITS = "jupyter-*-singleuser.service"  # the spawner's unit_name_template


def hub_only(s) -> None:
    if not s.enabled:
        raise Skip("jupyter.enabled is off")
    if s.mode != "hub":
        raise Skip(f"jupyter.mode is {s.mode}: the hub's checks do not apply")


def verify_hub_running(host, s) -> None:
    """the JupyterHub service is enabled and running, the lab's service is not"""
    hub_only(s)
    enabled, state = enabled_state(host, HUB_UNIT)
    assert enabled, not_enabled_message(HUB_UNIT, state)
    assert host.service(HUB_UNIT).is_running, f"{HUB_UNIT} is not running"
    assert not host.service(UNIT).is_running, f"{UNIT} (lab mode) is running beside the hub"


def verify_hub_local_only(host, s) -> None:
    """JupyterHub, its proxy and the proxy's API listen on loopback only"""
    hub_only(s)
    wanted = ports(s.port)
    for port in wanted:
        found = listen_addresses(host, HUB_UNIT, port)
        assert found, f"nothing listens on port {port} (proxy, its API, hub: {wanted})"
        assert found <= {"127.0.0.1", "[::1]"}, f"port {port} listens on {sorted(found)}"


# Waits (90 s at most, while the unit is up) for /hub/api, then one login form post with a
# random password (never printed): PAM must refuse it with 403, JupyterHub's failed login.
LOGIN_PROBE = """\
import http.cookiejar, json, secrets, subprocess, sys, time, urllib.error, urllib.parse
import urllib.request
port, unit, user = sys.argv[1], sys.argv[2], sys.argv[3]
base = "http://127.0.0.1:%s/hub" % port
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
def ask(path, data=None):
    try:
        with opener.open(base + path, data=data, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
for _ in range(90):
    try:
        code, body = ask("/api")
        if code == 200:
            break
    except OSError:
        pass
    state = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True)
    if state.stdout.strip() not in ("active", "activating"):
        print("down " + state.stdout.strip())
        sys.exit(0)
    time.sleep(1)
else:
    print("down no answer on 127.0.0.1:" + port)
    sys.exit(0)
print("version " + str(json.loads(body).get("version")))
ask("/login")
xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
form = {"username": user, "password": secrets.token_hex(16), "_xsrf": xsrf}
code, _ = ask("/login?next=", urllib.parse.urlencode(form).encode())
print("wrong-password %s" % code)
"""


def verify_hub_login(host, s) -> None:
    """JupyterHub answers with the pinned version and PAM refuses a wrong password"""
    hub_only(s)
    # The allow-list the hub reads (its config), not one recomputed here.
    allowed = host.check_output(
        shell.cmd("sed", "-n", "s/^c.Authenticator.allowed_users = //p", "--", HUB_CONFIG)
    )
    names = re.findall(r"'([^']+)'", allowed)
    assert names, "no account may log in (c.Authenticator.allowed_users is empty)"
    out = host.run(shell.cmd("python3", "-c", LOGIN_PROBE, str(s.port), HUB_UNIT, names[0]))
    found = dict(line.partition(" ")[::2] for line in out.stdout.splitlines())
    assert "down" not in found, f"JupyterHub does not answer: {found.get('down')}"
    assert found.get("version") == s.hub_version, (
        f"JupyterHub {found.get('version')} answers, not the pinned {s.hub_version}"
    )
    assert found.get("wrong-password") == "403", (
        f"a wrong password for {names[0]}: HTTP {found.get('wrong-password')}, not 403"
    )


def bytes_of(size: str) -> int:
    """JupyterHub's ByteSpecification: 8G is 8 * 1024**3 bytes."""
    scale = {"K": 1, "M": 2, "G": 3, "T": 4}
    return int(size[:-1]) * 1024 ** scale[size[-1]] if size[-1] in scale else int(size)


def seconds_of(span: str) -> float | None:
    """A systemd time span as `systemctl show` prints CPUQuotaPerSecUSec (2s, 1.500000s,
    500ms); None for infinity."""
    if span in ("", "infinity"):
        return None
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(us|ms|s|min)", span):
        total += float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}[unit]
    return total


def verify_hub_limits(host, s) -> None:
    """the running user servers have the set memory and CPU limits"""
    hub_only(s)
    listed = host.check_output(
        shell.cmd("systemctl", "list-units", "--type=service", "--state=running", "--plain",
                  "--no-legend", "--", USER_UNITS)
    )  # fmt: skip
    running = [line.split()[0] for line in listed.splitlines() if line.split()]
    if not running:
        raise Skip("no user server is running: the limits are checked on running ones")
    want_mem = str(bytes_of(s.hub_mem_limit)) if s.hub_mem_limit else "infinity"
    want_cpu = s.hub_cpu_limit or None
    problems = []
    for unit in running:
        show = host.check_output(
            shell.cmd("systemctl", "show", "-p", "MemoryMax", "-p", "CPUQuotaPerSecUSec", "--",
                      unit)
        )  # fmt: skip
        props = dict(line.partition("=")[::2] for line in show.splitlines())
        cpu = seconds_of(props.get("CPUQuotaPerSecUSec", ""))
        if props.get("MemoryMax") != want_mem:
            problems.append(f"{unit} MemoryMax={props.get('MemoryMax')} (want {want_mem})")
        if (cpu is None) != (want_cpu is None) or (cpu and abs(cpu - want_cpu) > 0.01):
            problems.append(f"{unit} CPUQuotaPerSecUSec={props.get('CPUQuotaPerSecUSec')} "
                            f"(want {want_cpu or 'infinity'} CPUs)")  # fmt: skip
    assert not problems, (
        "; ".join(problems) + ": a server keeps the limits it started with; restart it "
        "(the hub's control panel) to take the new ones"
    )


def verify_hub_kernels(host, s) -> None:
    """the user servers' JupyterLab lists the registered kernels (the PyTorch one imports torch)"""
    hub_only(s)
    listing = host.run(shell.cmd(f"{HUB_VENV}/bin/jupyter", "kernelspec", "list", "--json"))
    assert listing.rc == 0, f"jupyter kernelspec list: {listing.stderr.strip()[-300:]}"
    check_kernels(host, listing.stdout)


# The secret never printed: only whether the files are right and where its text was found.
SECRET_PROBE = """\
import os, subprocess, sys
state, secret_file, unit, unit_file = sys.argv[1:5]
def mode(path):
    st = os.stat(path)
    return "%o %d" % (st.st_mode & 0o777, st.st_uid)
if mode(state) != "700 0":
    print("loose %s is %s (want 700, root)" % (state, mode(state)))
if not os.path.exists(secret_file):
    print("missing " + secret_file)
    sys.exit(0)
if mode(secret_file) != "600 0":
    print("loose %s is %s (want 600, root)" % (secret_file, mode(secret_file)))
secret = open(secret_file).read().strip()
places = {
    "the unit file": open(unit_file).read(),
    "systemctl show": subprocess.run(["systemctl", "show", unit], capture_output=True,
                                     text=True).stdout,
    "the journal": subprocess.run(["journalctl", "-q", "--no-pager", "-o", "cat", "-u", unit],
                                  capture_output=True, text=True).stdout,
}
for where, text in places.items():
    if secret and secret in text:
        print("leak the cookie secret is in " + where)
print("checked")
"""


def verify_hub_secret_private(host, s) -> None:
    """the hub's cookie secret is root's alone (0600 in a 0700 directory), in no unit or journal"""
    hub_only(s)
    argv = shell.cmd("python3", "-c", SECRET_PROBE, HUB_STATE, COOKIE_SECRET, HUB_UNIT,
                     HUB_UNIT_FILE)  # fmt: skip
    out = host.run(argv)
    assert out.rc == 0, f"{COOKIE_SECRET}: {(out.stderr.strip().splitlines() or ['?'])[-1]}"
    problems = [x for x in out.stdout.splitlines() if x != "checked"]
    assert "checked" in out.stdout.splitlines() and not problems, "; ".join(problems)


HUB_CHECKS = (
    verify_hub_running,
    verify_hub_local_only,
    verify_hub_login,
    verify_hub_limits,
    verify_hub_kernels,
    verify_hub_secret_private,
)
