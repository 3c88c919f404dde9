"""Drift (issue 13 §2): every verify check that a container host can drift from, broken by hand
on a converged host; then `provision all --plan --detailed-exitcode` exits 3 and names the
step, `provision <step>` repairs it, verify is green and the plan is empty again.

The breaks and the reasons for the checks that are not here live in drift_table.py (one entry
per verify function, enforced by tests/unit/test_drift_registry.py). One container for the
module, converged once with the whole stack a container can hold: users with a key and
passwordless sudo, autostart with a service, the driver from Debian (driver.require_gpu=false),
cuda from the FIXTURE signed apt repo (tests/hosts/aptrepo.py), conda from the FIXTURE
installer (tests/hosts/condafixture.py), pytorch from the REAL torch CPU wheel in /opt/wheels,
and TensorBoard.
"""

from __future__ import annotations

import pytest
from common import ssh
from condafixture import build as build_installer
from pkgindex import make_wheelhouse, serve
from reliability.drift_table import DRIFT

from hostrun import booted, provision_runner
from provision.steps import STEPS

pytestmark = pytest.mark.container
CASES = [key for key, entry in DRIFT.items() if "break" in entry]
CHECKS = {f"{step.name}.{fn.__name__}": fn for step in STEPS for fn in step.verify}


@pytest.fixture(scope="module")
def sources(require_tier, tmp_path_factory):
    """The FIXTURE apt repo and conda installer, and the real torch wheel, on 127.0.0.1."""
    import aptrepo

    reason = aptrepo.missing_tools()
    if reason:
        require_tier("container", reason)
    root = tmp_path_factory.mktemp("drift-sources")
    installer, sha = build_installer(root / "installer")
    servers = []
    urls = {}
    for key, folder in (
        ("repo", aptrepo.build(root / "cuda-repo")),
        ("installer", installer.parent),
        ("wheels", make_wheelhouse(root / "wheels")),
    ):
        server, url = serve(folder)
        servers.append(server)
        urls[key] = url
    urls["installer"] += installer.name
    urls["sha256"] = sha
    urls["repo_key"] = aptrepo.key_fingerprint(root / "cuda-repo")  # not NVIDIA's key
    try:
        yield urls
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def host(require_tier, sources):
    """The container, converged once: `provision all`, an empty plan and a green verify."""
    from common import CACHE

    extra = {
        "users.accounts": "alice",
        "users.authorized_keys": str(CACHE / "id_ed25519.pub"),
        "users.passwordless_sudo": "true",
        "autostart.services": "ssh.service",
        "driver.enabled": "true",
        "driver.require_gpu": "false",
        "driver.source": "debian",
        "cuda.enabled": "true",
        "cuda.repo_url": sources["repo"].rstrip("/"),
        "cuda.repo_key": sources["repo_key"],
        "cuda.version": "12.8",
        "conda.enabled": "true",
        "conda.installer_url": sources["installer"],
        "conda.installer_sha256": sources["sha256"],
        "pytorch.enabled": "true",
        "pytorch.index": "cpu",
        "pytorch.version": "2.13.0",
        "pytorch.packages": "torch",
        "pytorch.index_url": "https://pypi.org/simple",
        "pytorch.python": "3.11",
        "pytorch.find_links": sources["wheels"],
    }
    for box in booted("container", require_tier, extra_vars=extra):
        provision = provision_runner(box, box.inventory.parent / "drift-logs")
        provision("all", "--host", box.name)
        provision("all", "--host", box.name, "--plan", "--detailed-exitcode")
        provision("verify", "--host", box.name)
        yield box


def lines_of(stdout: str, status: str, doc: str) -> list[str]:
    """verify's lines of one check (by its docstring's first line) with this status."""
    return [x for x in stdout.splitlines() if f" {status} " in x and doc in x]


@pytest.mark.reliability("faults")
@pytest.mark.parametrize("key", CASES)
def test_drift_is_planned_repaired_and_verified(host, tmp_path, key):
    entry = DRIFT[key]
    step = entry.get("repaired_by", key.split(".")[0])
    owner = key.split(".")[0]
    doc = CHECKS[key].__doc__.splitlines()[0].strip()
    provision = provision_runner(host, tmp_path / "logs")
    ssh(host, entry["break"], user="root")
    try:
        if not entry.get("slow_verify"):
            # The break hits exactly this property: verify fails this check.
            broken = provision("verify", "--host", host.name, owner, check_rc=1)
            hit = lines_of(broken.stdout, "failed", doc) + lines_of(broken.stdout, "error", doc)
            assert hit, f"the break did not fail '{doc}':\n{broken.stdout}"
        plan = provision("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=3)
        planned = [x.split()[1] for x in plan.stdout.splitlines() if " planned " in x]
        want = entry.get("planned", [step])
        assert planned == want, f"want only {want} planned:\n{plan.stdout}"
        provision(step, "--host", host.name)
        verify = provision("verify", "--host", host.name, owner)
        assert lines_of(verify.stdout, "passed", doc), verify.stdout
        provision("all", "--host", host.name, "--plan", "--detailed-exitcode")
    except BaseException:
        # Leave the host converged for the next case, so one failure is reported once.
        provision("all", "--host", host.name, check_rc=None)
        raise
