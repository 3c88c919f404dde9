"""jupyter (lab mode) over real SSH on one fresh Debian 12 container: `provision all` with
jupyter on and the REAL torch 2.13.0 CPU wheel (/opt/wheels, served on loopback; its
dependencies and JupyterLab from PyPI) as the pytorch venv, verify green, a second run with no
changes; a login from this machine through `provision tunnel` with the URL `provision
jupyter-url` prints, a kernel of the PyTorch env that imports torch; the token in no transcript,
no plan and no -vv output; drift of each verify property planned and repaired; hub refused.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
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


def test_hub_mode_is_refused_naming_the_setting(box, tmp_path):
    host, *_ = box
    provision = provision_runner(host, tmp_path / "logs")
    run = provision("jupyter", "--host", host.name, "--set", "jupyter.mode=hub", check_rc=2)
    err = run.stdout + run.stderr
    assert "jupyter.mode" in err and "not built yet" in err, err


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
