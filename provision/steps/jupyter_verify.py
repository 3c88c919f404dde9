"""jupyter's verify checks: probes that run on the box as root (the service, its listener, a
login without and with the token, the registered kernels, the token file and where its text
must not be); each prints what it found, never the token.

Functions here take the jupyter step's Settings (`s`), which is not imported:
provision.steps.jupyter imports this module.
"""

from __future__ import annotations

from provision import shell
from provision.errors import Skip
from provision.unitstate import enabled_state, not_enabled_message

# The step's files (provision.steps.jupyter uses these names too).
UNIT = "provision-jupyter.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
TOKEN_DIR = "/var/lib/provision/jupyter"
TOKEN_FILE = f"{TOKEN_DIR}/token"
# The kernels provision registered (verify checks the server against it), beside the token.
MANIFEST = f"{TOKEN_DIR}/kernels.json"


# Waits (60 s at most, while the unit is active or activating) for the port, then asks
# without the token and with it (an Authorization header: never a URL in a log).
HTTP_PROBE = """\
import subprocess, sys, time, urllib.error, urllib.request
port, unit, token_file, path = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
class Keep(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(Keep)
def ask(path, token=""):
    req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path))
    if token:
        req.add_header("Authorization", "token " + token)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers.get("Location", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", ""), b""
for _ in range(60):
    try:
        ask("/api/status")
        break
    except OSError:
        state = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True)
        if state.stdout.strip() not in ("active", "activating"):
            print("down " + state.stdout.strip())
            sys.exit(0)
        time.sleep(1)
else:
    print("down no answer on 127.0.0.1:" + port)
    sys.exit(0)
try:
    token = open(token_file).read()
except OSError as e:
    token = ""
    print("token unreadable %s" % e.strerror)
anon, _, _ = ask("/api/status")
lab, where, _ = ask("/lab")
authed, _, body = ask(path, token) if token else (0, "", b"")
print("anon %s" % anon)
print("lab %s %s" % (lab, where.split("?")[0]))
print("authed %s" % authed)
sys.stdout.buffer.write(b"body " + body + b"\\n")
"""


def http_probe(host, s, path: str) -> dict[str, str]:
    """HTTP_PROBE's findings: {'anon': code, 'lab': 'code where', 'authed': code, 'body': ...}
    or {'down': why}."""
    argv = shell.cmd("python3", "-c", HTTP_PROBE, str(s.port), UNIT, TOKEN_FILE, path)
    out = host.run(argv).stdout
    found = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key, value)
    return found


def lab_only(s) -> None:
    """Skip a lab check where jupyter is off or runs the hub (jupyter_hub_verify.py)."""
    if not s.enabled:
        raise Skip("jupyter.enabled is off")
    if s.mode != "lab":
        raise Skip(f"jupyter.mode is {s.mode}: the lab's checks do not apply")


def verify_running(host, s) -> None:
    """the JupyterLab service is enabled and running"""
    lab_only(s)
    enabled, state = enabled_state(host, UNIT)
    assert enabled, not_enabled_message(UNIT, state)
    assert host.service(UNIT).is_running, f"{UNIT} is not running"


def listen_addresses(host, unit: str, port: int) -> set[str]:
    """The addresses something listens on at `port`, once it does: a (re)started server takes
    seconds to listen, so wait while `unit` is up (60 s at most)."""
    ss = f"ss -Htln 'sport = :{port}'"
    unit_up = shell.cmd("systemctl", "is-active", "-q", "--", unit)
    wait = f"for i in $(seq 60); do {ss} | grep -q . && break; {unit_up} || break; sleep 1; done"
    lines = host.check_output(f"{wait}; {ss}").splitlines()
    return {line.split()[3].rsplit(":", 1)[0] for line in lines if len(line.split()) > 3}


def verify_local_only(host, s) -> None:
    """JupyterLab listens on loopback only"""
    lab_only(s)
    addresses = listen_addresses(host, UNIT, s.port)
    assert addresses, f"nothing listens on port {s.port}"
    assert addresses <= {"127.0.0.1", "[::1]"}, f"listens on {sorted(addresses)}"


def verify_login(host, s) -> None:
    """JupyterLab refuses requests without the token and answers /api/status with it"""
    lab_only(s)
    found = http_probe(host, s, "/api/status")
    assert "down" not in found, f"JupyterLab does not answer: {found['down']}"
    assert "token" not in found, f"the token file: {found['token']}"
    # jupyter_server: 403 for an API request without credentials; a page redirects to /login.
    assert found.get("anon") == "403", f"/api/status without the token: HTTP {found.get('anon')}"
    lab = found.get("lab", "").split()
    assert lab[:1] == ["302"] and lab[1:2] and lab[1].endswith("/login"), (
        f"/lab without the token is not sent to the login page: HTTP {' '.join(lab)}"
    )
    assert found.get("authed") == "200", f"/api/status with the token: HTTP {found.get('authed')}"


KERNELS_PROBE = """\
import json, subprocess, sys
manifest, body = sys.argv[1], sys.argv[2]
want = json.load(open(manifest))["kernels"]
specs = json.loads(body)["kernelspecs"]
print("listed " + " ".join(sorted(specs)))
for name in want:
    if name not in specs:
        print("missing " + name)
        continue
    python = specs[name]["spec"]["argv"][0]
    r = subprocess.run([python, "-c", "import ipykernel, torch"], capture_output=True, text=True)
    if r.returncode:
        print("broken %s %s" % (name, (r.stderr.strip().splitlines() or ["?"])[-1]))
"""


def verify_kernels(host, s) -> None:
    """the server lists the registered kernels (the PyTorch one imports torch and ipykernel)"""
    lab_only(s)
    found = http_probe(host, s, "/api/kernelspecs")
    assert "down" not in found, f"JupyterLab does not answer: {found['down']}"
    assert found.get("authed") == "200", f"/api/kernelspecs: HTTP {found.get('authed')}"
    listed = check_kernels(host, found.get("body", ""))
    assert "python3" in listed, f"no default python3 kernel ({' '.join(listed)})"


def check_kernels(host, specs_json: str) -> list[str]:
    """Every kernel of the manifest is in the server's kernelspecs (`specs_json`: the API's
    answer or `jupyter kernelspec list --json`, both {"kernelspecs": {name: {"spec": ...}}})
    and its python imports ipykernel and torch; the names listed."""
    has_manifest = host.run(shell.cmd("test", "-s", MANIFEST)).rc == 0
    assert has_manifest, f"{MANIFEST} (the kernels provision registered) is missing"
    out = host.run(shell.cmd("python3", "-c", KERNELS_PROBE, MANIFEST, specs_json))
    assert out.rc == 0, f"the kernel list could not be read: {out.stderr.strip()[-300:]}"
    problems = [x for x in out.stdout.splitlines() if x.startswith(("missing ", "broken "))]
    assert not problems, "; ".join(problems)
    listed = next((x for x in out.stdout.splitlines() if x.startswith("listed ")), "listed")
    return listed.split()[1:]


# The token never printed: only whether the file is right and where its text was found.
SECRET_PROBE = """\
import os, pwd, subprocess, sys
token_file, unit, unit_file, user = sys.argv[1:5]
st = os.stat(token_file)
token = open(token_file).read()
if not token:
    print("empty " + token_file)
owner = pwd.getpwuid(st.st_uid).pw_name
if (st.st_mode & 0o777) != 0o600 or owner != user:
    print("loose %s is %o %s (want 600 %s)" % (token_file, st.st_mode & 0o777, owner, user))
places = {
    "the unit file": open(unit_file).read(),
    "systemctl show": subprocess.run(["systemctl", "show", unit], capture_output=True,
                                     text=True).stdout,
    "the journal": subprocess.run(["journalctl", "-q", "--no-pager", "-o", "cat", "-u", unit],
                                  capture_output=True, text=True).stdout,
}
for where, text in places.items():
    if token and token in text:
        print("leak the token is in " + where)
print("checked")
"""


def verify_token_private(host, s) -> None:
    """the token file is the user's alone (0600) and the token is in no unit or journal

    Neither the unit file, the unit's environment nor the journal holds the token."""
    lab_only(s)
    user = host.check_output(f"systemctl show -p User --value -- {UNIT}").strip()
    argv = shell.cmd("python3", "-c", SECRET_PROBE, TOKEN_FILE, UNIT, UNIT_FILE, user or "?")
    out = host.run(argv)
    assert out.rc == 0, f"{TOKEN_FILE}: {(out.stderr.strip().splitlines() or ['?'])[-1]}"
    problems = [x.partition(" ")[2] for x in out.stdout.splitlines() if x != "checked"]
    assert "checked" in out.stdout.splitlines() and not problems, "; ".join(problems)
