"""jupyter (lab mode) over real SSH on one fresh Debian 12 container: `provision all` with
jupyter on and the REAL torch 2.13.0 CPU wheel (/opt/wheels, served on loopback; its
dependencies and JupyterLab from PyPI) as the pytorch venv, verify green, a second run with no
changes; a login from this machine through `provision tunnel` with the URL `provision
jupyter-url` prints, a kernel of the PyTorch env that imports torch; the token in no transcript,
no plan and no -vv output; drift of each verify property planned and repaired. Then the same
container in hub mode (JupyterHub, two accounts of the users step): the lab's service replaced,
verify green, a second run with no changes, a real PAM login over the tunnel that spawns a
server under systemd with the set limits, the PyTorch kernel in it, and the hub's drift.
"""

from __future__ import annotations

import json
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from common import free_port, ssh
from pkgindex import make_wheelhouse, serve

from hostrun import booted, provision_runner

pytestmark = pytest.mark.container

UNIT = "provision-jupyter.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
TOKEN_FILE = "/var/lib/provision/jupyter/token"
KERNEL = "/usr/local/share/jupyter/kernels/provision-dl"
# The five verify checks, by the first words of their docstrings (what verify prints).
KERNEL_RUN = """\
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name="provision-dl", startup_timeout=90)
try:
    cell = "import torch; print(torch.__version__, (torch.ones(2, 2) @ torch.ones(2, 2)).sum().item())"
    reply = kc.execute_interactive(cell, timeout=90)
    assert reply["content"]["status"] == "ok", reply["content"]
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
"""
CHECKS = {
    "running": "the JupyterLab service is enabled and running",
    "local": "JupyterLab listens on loopback only",
    "login": "JupyterLab refuses requests without the token",
    "kernels": "the server lists the registered kernels",
    "token": "the token file is the user's alone (0600)",
}


@pytest.fixture(scope="module")
def wheels(require_tier, tmp_path_factory):
    """The real torch wheel of /opt/wheels as a find-links page on 127.0.0.1."""
    server, url = serve(make_wheelhouse(tmp_path_factory.mktemp("jupyter-wheels")))
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def box(require_tier, wheels, tmp_path_factory):
    """The container with jupyter and a pytorch venv, after the first `provision all`."""
    port = free_port()  # the container shares this machine's network: never a fixed port
    extra = {
        "driver.enabled": "false",
        "cuda.enabled": "false",
        "conda.enabled": "false",
        "tensorboard.enabled": "false",
        "pytorch.enabled": "true",
        "pytorch.index": "cpu",
        "pytorch.version": "2.13.0",
        "pytorch.packages": "torch",
        "pytorch.index_url": "https://pypi.org/simple",
        "pytorch.find_links": wheels,
        "jupyter.enabled": "true",
        "jupyter.port": str(port),
    }
    for host in booted("container", require_tier, extra_vars=extra):
        logs = tmp_path_factory.mktemp("jupyter-first")
        first = provision_runner(host, logs / "logs")("all", "--host", host.name, "-v")
        yield host, port, first, logs
        # what the module's runs left: transcripts are searched for the token at the end


def token_of(host) -> str:
    return ssh(host, f"cat {TOKEN_FILE}", user="root").stdout


def verify_lines(stdout: str) -> dict[str, str]:
    """{check key: status} from `provision verify` output."""
    found = {}
    for line in stdout.splitlines():
        for key, doc in CHECKS.items():
            if doc in line:
                found[key] = line.split()[2]
    return found


def test_first_run_installs_and_verify_is_green(box, tmp_path):
    host, _port, first, _logs = box
    out = first.stdout
    for line in (
        "install JupyterLab 4.6.6 into /opt/provision/jupyter",
        "generate a JupyterLab token on the box into /var/lib/provision/jupyter/token",
        "install ipykernel into /opt/provision/envs/dl (the PyTorch (dl) kernel)",
        f"write {KERNEL}/kernel.json",
        f"write {UNIT_FILE}",
    ):
        assert line in out, out
    provision = provision_runner(host, tmp_path / "logs")
    again = provision("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=0)
    assert "jupyter" in again.stdout
    verify = provision("verify", "--host", host.name, "jupyter")
    assert verify_lines(verify.stdout) == dict.fromkeys(CHECKS, "passed"), verify.stdout
    # On the box itself: the token file is the login user's, 0600, and not in the unit.
    stat = ssh(host, f"stat -c '%a %U' {TOKEN_FILE}", user="root").stdout.split()
    assert stat == ["600", "tester"]
    assert token_of(host) and token_of(host) not in ssh(host, f"cat {UNIT_FILE}").stdout


def test_tunnel_and_jupyter_url_log_in_and_torch_runs_in_a_kernel(box, tmp_path):
    host, port, _first, _logs = box
    provision = provision_runner(host, tmp_path / "logs")
    local = free_port()
    url = provision("jupyter-url", "--host", host.name, "--local-port", str(local)).stdout.strip()
    token = token_of(host)
    assert url == f"http://127.0.0.1:{local}/lab?token={token}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "provision", "tunnel", "-i", str(host.inventory), "--host",
         host.name, "--port", str(port), "--local-port", str(local), "--log-dir", str(tmp_path)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert f"http://127.0.0.1:{local}/" in proc.stderr.readline()
        base = f"http://127.0.0.1:{local}"
        # Without the token: the API refuses (403), as jupyter_server documents.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/status", timeout=10)
        assert refused.value.code == 403
        # The URL jupyter-url printed logs the browser in: a session cookie comes back.
        jar = urllib.request.HTTPCookieProcessor()
        browser = urllib.request.build_opener(jar)
        page = browser.open(url, timeout=30)
        assert page.status == 200 and b"JupyterLab" in page.read()
        assert any(c.name.startswith("username-") for c in jar.cookiejar), list(jar.cookiejar)
        auth = {"Authorization": f"token {token}"}

        def api(path, data=None, method="GET"):
            body = json.dumps(data).encode() if data is not None else None
            req = urllib.request.Request(base + path, body, auth, method=method)
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")

        specs = api("/api/kernelspecs")["kernelspecs"]
        assert {"python3", "provision-dl"} <= set(specs), sorted(specs)
        argv = specs["provision-dl"]["spec"]["argv"]
        assert argv[0] == "/opt/provision/envs/dl/bin/python"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    # A kernel of that spec, started as the user by jupyter_client (the venv's, as the server
    # does), runs torch: execute_interactive prints the cell's output here.
    ran = ssh(host, f"timeout 120 /opt/provision/jupyter/bin/python -c {shlex.quote(KERNEL_RUN)}")
    assert ran.stdout.split()[-2:] == ["2.13.0+cpu", "8.0"], ran.stdout + ran.stderr


def drift(host, tmp_path, breaks: str, broken: list[str], planned: list[str]) -> None:
    """Break by hand, verify fails exactly these checks, the plan names jupyter with these
    changes, `provision jupyter` repairs, verify green, the plan empty."""
    provision = provision_runner(host, tmp_path / "logs")
    ssh(host, breaks, user="root")
    try:
        verify = provision("verify", "--host", host.name, "jupyter", check_rc=1)
        failed = sorted(k for k, v in verify_lines(verify.stdout).items() if v == "failed")
        assert failed == sorted(broken), verify.stdout
        plan = provision("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=3)
        steps = [x.split()[1] for x in plan.stdout.splitlines() if " planned " in x]
        assert steps == ["jupyter"], plan.stdout
        for line in planned:
            assert line in plan.stdout, plan.stdout
        provision("jupyter", "--host", host.name)
        verify = provision("verify", "--host", host.name, "jupyter")
        assert verify_lines(verify.stdout) == dict.fromkeys(CHECKS, "passed"), verify.stdout
        provision("all", "--host", host.name, "--plan", "--detailed-exitcode")
    except BaseException:
        provision("jupyter", "--host", host.name, check_rc=None)  # converged for what follows
        raise


def test_drift_of_the_files_is_planned_and_repaired(box, tmp_path):
    host, *_ = box
    breaks = (
        f"chmod 0644 {TOKEN_FILE} && rm -r {KERNEL} && "
        f"sed -i 's|^Environment=JUPYTER_TOKEN_FILE=.*|Environment=JUPYTER_TOKEN_FILE=/dev/null|'"
        f" {UNIT_FILE} && systemctl daemon-reload && systemctl restart {UNIT}"
    )
    drift(
        host,
        tmp_path,
        breaks,
        ["login", "kernels", "token"],
        [f"make {TOKEN_FILE} tester's alone (0600; it is 644 tester tester)",
         f"write {KERNEL}/kernel.json", f"update {UNIT_FILE}"],
    )  # fmt: skip


def test_drift_of_the_service_is_planned_and_repaired(box, tmp_path):
    host, *_ = box
    breaks = (
        f"systemctl disable {UNIT} && sed -i 's/--ip=127.0.0.1/--ip=0.0.0.0/' {UNIT_FILE}"
        f" && systemctl daemon-reload && systemctl restart {UNIT} && sleep 8"
    )
    drift(
        host,
        tmp_path,
        breaks,
        ["running", "local"],
        [f"enable {UNIT} at boot", f"update {UNIT_FILE}"],
    )


def test_a_new_version_is_a_plan_line(box, tmp_path):
    host, *_ = box
    provision = provision_runner(host, tmp_path / "logs")
    plan = provision(
        "jupyter", "--host", host.name, "--plan", "--set", "jupyter.version=4.6.5", check_rc=0
    )
    assert "install JupyterLab 4.6.5 into /opt/provision/jupyter (the venv has 4.6.6)" in (
        plan.stdout
    ), plan.stdout


def test_the_token_is_in_no_transcript_plan_or_vv_output(box, tmp_path):
    host, _port, first, logs = box
    provision = provision_runner(host, tmp_path / "logs")
    vv = provision("all", "--host", host.name, "-vv", "--plan")
    verify = provision("verify", "--host", host.name, "jupyter", "-vv")
    token = token_of(host)
    assert len(token) == 64, "the token is 32 random bytes in hex"
    places = {"first run": first.stdout + first.stderr, "-vv plan": vv.stdout + vv.stderr,
              "-vv verify": verify.stdout + verify.stderr}  # fmt: skip
    for folder in (logs, tmp_path):
        for path in folder.rglob("*"):
            if path.is_file():
                places[str(path)] = path.read_text(errors="replace")
    assert any("jupyter" in text for text in places.values())  # the places hold our runs
    leaks = [where for where, text in places.items() if token in text]
    assert not leaks, leaks
    journal = ssh(host, f"journalctl -q --no-pager -o cat -u {UNIT}", user="root").stdout
    assert "Jupyter Server" in journal and token not in journal
    urlquoted = urllib.parse.quote(token)
    assert urlquoted not in journal
    # Last (the host goes down next): the service stops promptly, as a box's shutdown needs.
    took = ssh(
        host, f"s=$(date +%s); systemctl stop {UNIT}; echo $(($(date +%s) - s))", user="root"
    )
    assert int(took.stdout.split()[-1]) < 20, took.stdout


# --- hub mode (the same container, switched) -------------------------------------------------

HUB_UNIT = "provision-jupyterhub.service"
HUB_UNIT_FILE = f"/etc/systemd/system/{HUB_UNIT}"
HUB_CONFIG = "/etc/provision/jupyterhub/jupyterhub_config.py"
HUB_STATE = "/var/lib/provision/jupyterhub"
ALICE_UNIT = "jupyter-alice-singleuser.service"  # the spawner's default unit_name_template
HUB = [
    "--set", "jupyter.mode=hub", "--set", "users.accounts=alice,bob",
    "--set", "jupyter.hub_mem_limit=1G", "--set", "jupyter.hub_cpu_limit=1.5",
]  # fmt: skip
HUB_CHECKS = {
    "running": "the JupyterHub service is enabled and running",
    "local": "JupyterHub, its proxy and the proxy's API listen on loopback only",
    "login": "JupyterHub answers with the pinned version and PAM refuses a wrong password",
    "limits": "the running user servers have the set memory and CPU limits",
    "kernels": "the user servers' JupyterLab lists the registered kernels",
    "secret": "the hub's cookie secret is root's alone",
}


def hub_lines(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        for key, doc in HUB_CHECKS.items():
            if doc in line:
                found[key] = line.split()[2]
    return found


@pytest.fixture(scope="module")
def hub(box, tmp_path_factory):
    """The box switched to hub mode: the first hub run's output."""
    host, *_ = box
    provision = provision_runner(host, tmp_path_factory.mktemp("hub") / "logs")
    return provision("all", "--host", host.name, *HUB)


def test_hub_mode_replaces_the_lab_verify_green_second_run_no_changes(box, hub, tmp_path):
    host, *_ = box
    for line in (
        "install JupyterHub 6.1.1, jupyterhub-systemdspawner 1.0.2 and JupyterLab 4.6.6 into "
        "/opt/provision/jupyterhub",
        f"disable {UNIT} at boot",
        f"write {HUB_CONFIG}",
        f"write {HUB_UNIT_FILE}",
    ):
        assert line in hub.stdout, hub.stdout
    provision = provision_runner(host, tmp_path / "logs")
    provision("all", "--host", host.name, *HUB, "--plan", "--detailed-exitcode", check_rc=0)
    verify = provision("verify", "--host", host.name, "jupyter", *HUB)
    want = {**dict.fromkeys(HUB_CHECKS, "passed"), "limits": "skipped"}  # no server yet
    assert hub_lines(verify.stdout) == want, verify.stdout
    assert set(verify_lines(verify.stdout).values()) == {"skipped"}, verify.stdout  # the lab's
    # The hub's accounts: the users step's two and the login user; its admin: the login user.
    config = ssh(host, f"cat {HUB_CONFIG}").stdout
    assert "c.Authenticator.allowed_users = {'alice', 'bob', 'tester'}" in config
    assert "c.Authenticator.admin_users = {'tester'}" in config
    state = ssh(host, f"stat -c '%a %U' {HUB_STATE} {HUB_STATE}/jupyterhub_cookie_secret",
                user="root").stdout.split()  # fmt: skip
    assert state == ["700", "root", "600", "root"]


def login(base: str, user: str, password: str):
    """A browser's login through the hub's form; the opener keeps the cookies."""
    jar = urllib.request.HTTPCookieProcessor()
    browser = urllib.request.build_opener(jar)
    browser.open(f"{base}/hub/login", timeout=30).read()
    xsrf = next(c.value for c in jar.cookiejar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf})
    page = browser.open(f"{base}/hub/login?next=", form.encode(), timeout=180)
    return browser, jar, page


def test_a_pam_login_over_the_tunnel_spawns_a_limited_server_with_the_torch_kernel(
    box, hub, tmp_path
):
    host, _port, *_ = box
    password = secrets.token_hex(12)  # set by hand: provision never holds a password
    ssh(host, f"echo alice:{password} | chpasswd", user="root")
    local = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "provision", "tunnel", "-i", str(host.inventory), "--host",
         host.name, "jupyter", "--local-port", str(local), "--log-dir", str(tmp_path), *HUB],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert f"http://127.0.0.1:{local}/" in proc.stderr.readline()
        base = f"http://127.0.0.1:{local}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            login(base, "alice", "wrong-" + password)
        assert refused.value.code == 403  # PAM said no: JupyterHub's failed login
        browser, jar, page = login(base, "alice", password)
        # Logged in, spawned and sent on to alice's own JupyterLab (OAuth through the hub).
        deadline = time.monotonic() + 180
        while "/user/alice/" not in page.url and time.monotonic() < deadline:
            time.sleep(2)
            page = browser.open(f"{base}/hub/spawn-pending/alice", timeout=60)
        page = browser.open(f"{base}/user/alice/lab", timeout=60)
        assert page.status == 200 and "/user/alice/lab" in page.url, page.url
        xsrf = next((c.value for c in jar.cookiejar if c.name == "_xsrf"
                     and c.path.startswith("/user/alice")), "")  # fmt: skip
        req = urllib.request.Request(f"{base}/user/alice/api/kernelspecs",
                                     headers={"X-XSRFToken": xsrf})  # fmt: skip
        specs = json.loads(browser.open(req, timeout=30).read())["kernelspecs"]
        assert {"python3", "provision-dl"} <= set(specs), sorted(specs)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    # alice's server is a systemd unit of its own, as alice, with the limits asked for:
    # MemoryMax=1G is 1073741824 bytes, CPUQuota=150% is 1.5 s of CPU per second (systemd).
    show = ssh(host, f"systemctl show -p User -p MemoryMax -p CPUQuotaPerSecUSec -p ActiveState "
                     f"{ALICE_UNIT}").stdout  # fmt: skip
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    uid = ssh(host, "id -u alice").stdout.strip()  # the spawner gives systemd-run the uid
    assert props["ActiveState"] == "active" and props["User"] in ("alice", uid), props
    assert props["MemoryMax"] == "1073741824", props
    assert props["CPUQuotaPerSecUSec"] in ("1.500000s", "1.5s"), props
    # `provision status` reads the same from systemd: the hub and alice's server, its limit.
    status = provision_runner(host, tmp_path / "logs")("status", "--host", host.name, "--json")
    box_status = json.loads(status.stdout)[host.name]  # {host: status}
    kinds = [(x["kind"], x["state"]) for x in box_status["notebook_services"]]
    assert ("jupyterhub", "active") in kinds, kinds
    servers = {x["user"]: x for x in box_status["notebook_servers"]}
    assert servers["alice"]["memory_max_bytes"] == 1073741824, servers
    # The PyTorch kernel as alice (jupyter_client of the hub's venv, as her server runs it).
    ran = ssh(host, "runuser -u alice -- timeout 120 /opt/provision/jupyterhub/bin/python -c "
                    f"{shlex.quote(KERNEL_RUN)}", user="root")  # fmt: skip
    assert ran.stdout.split()[-2:] == ["2.13.0+cpu", "8.0"], ran.stdout + ran.stderr
    verify = provision_runner(host, tmp_path / "logs")("verify", "--host", host.name, "jupyter",
                                                       *HUB)  # fmt: skip
    assert hub_lines(verify.stdout) == dict.fromkeys(HUB_CHECKS, "passed"), verify.stdout


def test_hub_limits_of_a_running_server_are_checked(box, hub, tmp_path):
    host, *_ = box
    provision = provision_runner(host, tmp_path / "logs")
    if ssh(host, f"systemctl is-active {ALICE_UNIT}", check=False).stdout.strip() != "active":
        pytest.skip("needs alice's server from the login test")
    other = [*HUB, "--set", "jupyter.hub_mem_limit=2G"]
    verify = provision("verify", "--host", host.name, "jupyter", *other, check_rc=1)
    assert hub_lines(verify.stdout)["limits"] == "failed", verify.stdout
    assert "MemoryMax=1073741824 (want 2147483648)" in verify.stdout, verify.stdout
    assert "restart it" in verify.stdout
    plan = provision("jupyter", "--host", host.name, *other, "--plan", check_rc=0)
    assert f"update {HUB_CONFIG}" in plan.stdout, plan.stdout


def hub_drift(host, tmp_path, breaks: str, broken: list[str], planned: list[str]) -> None:
    """drift() for the hub: break, verify fails these checks, the plan names jupyter with these
    changes, `provision jupyter` repairs, verify green, the plan empty."""
    provision = provision_runner(host, tmp_path / "logs")
    ssh(host, breaks, user="root")
    try:
        verify = provision("verify", "--host", host.name, "jupyter", *HUB, check_rc=1)
        failed = sorted(k for k, v in hub_lines(verify.stdout).items() if v == "failed")
        assert failed == sorted(broken), verify.stdout
        plan = provision("all", "--host", host.name, *HUB, "--plan", "--detailed-exitcode",
                         check_rc=3)  # fmt: skip
        steps = [x.split()[1] for x in plan.stdout.splitlines() if " planned " in x]
        assert steps == ["jupyter"], plan.stdout
        for line in planned:
            assert line in plan.stdout, plan.stdout
        provision("jupyter", "--host", host.name, *HUB)
        verify = provision("verify", "--host", host.name, "jupyter", *HUB)
        assert "failed" not in hub_lines(verify.stdout).values(), verify.stdout
        provision("all", "--host", host.name, *HUB, "--plan", "--detailed-exitcode")
    except BaseException:
        provision("jupyter", "--host", host.name, *HUB, check_rc=None)
        raise


def test_hub_drift_is_planned_and_repaired(box, hub, tmp_path):
    host, port, *_ = box
    breaks = (
        f"chmod 0755 {HUB_STATE} && rm -r {KERNEL} && "
        f"sed -i 's|^c.Authenticator.allowed_users = .*|c.Authenticator.allowed_users = set()|;"
        f"s|http://127.0.0.1:{port}|http://0.0.0.0:{port}|' {HUB_CONFIG} && "
        f"systemctl restart {HUB_UNIT} && sleep 5"
    )
    hub_drift(
        host, tmp_path, breaks, ["local", "login", "kernels", "secret"],
        [f"create {HUB_STATE} (0700, root", f"write {KERNEL}/kernel.json",
         f"update {HUB_CONFIG}"],
    )  # fmt: skip
    hub_drift(
        host, tmp_path, f"systemctl disable --now {HUB_UNIT}", ["running", "local", "login"],
        [f"enable {HUB_UNIT} at boot", f"start {HUB_UNIT}"],
    )  # fmt: skip
