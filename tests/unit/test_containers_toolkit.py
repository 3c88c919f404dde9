"""containers.nvidia: NVIDIA's container toolkit repository (provision/signedrepo.py), the way
Docker gets the GPUs, and the daemon-reload mitigation.

Expectations come from outside the code: NVIDIA's install guide (the key at
`<repo>/gpgkey` dearmored into /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg, the
line `deb [signed-by=...] <repo>/stable/deb/$(ARCH) /`, the list at
/etc/apt/sources.list.d/nvidia-container-toolkit.list), the daemon.json entry that
`nvidia-ctk runtime configure --runtime=docker` writes (`"runtimes": {"nvidia": {"args": [],
"path": "nvidia-container-runtime"}}`), Docker 25's CDI devices behind `features.cdi`, the udev
rule of NVIDIA's notice (NVIDIA/nvidia-docker#1730), and the version strings of Debian's
docker.io (bookworm 20.10.24+dfsg1-1+deb12u1, trixie 26.1.5+dfsg1-9+b1). The key install
script and the device read run in the real shell against a FIXTURE key and device nodes made
here (mknod), not against anything of NVIDIA's.
"""

import base64
import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import aptrepo
import pytest
import toolkitrepo

from fakes import FakeRemote
from provision import cudarepo, signedrepo
from provision.changes import Upload
from provision.facts import parse_facts
from provision.facts.host import PciDevice
from provision.step import Context
from provision.steps import base, containers, users
from provision.steps import containers_toolkit as toolkit
from provision.templates import render

DATA = Path(__file__).parent.parent / "data" / "facts"
OFFICIAL_LINE = (
    "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] "
    "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"
)
DEBIAN_MAIN = (
    "http://deb.debian.org/debian/\tbookworm\tmain\t/etc/apt/sources.list.d/debian.sources:1"
)
GPU = PciDevice("0000:01:00.0", "2684", "0x030000", "AD102 [GeForce RTX 4090]")

TEMPLATE_EXAMPLES = {
    "containers/nvidia-container-toolkit.list.j2": {
        "name": "NVIDIA's container toolkit repository",
        "keyring": toolkit.KEYRING,
        "uri": toolkit.TOOLKIT_REPO + "/stable/deb/$(ARCH)",
        "suite": "/",
        "components": "",
    },
    "containers/nvidia-container-toolkit.pin.j2": {
        "name": "NVIDIA's container toolkit repository",
        "origin": "nvidia.github.io",
        "packages": "nvidia-container-toolkit",
    },
    "containers/71-nvidia-dev-char.rules.j2": {},
}


def answers(
    version="20.10.24+dfsg1-1+deb12u1",
    installed=False,
    targets=(DEBIAN_MAIN,),
    fetched=(),
    key=b"",
    unlinked="",
    spec=False,
) -> FakeRemote:
    r = FakeRemote()
    r.on(r"daemon.json.before-provision", "@@none\n")
    r.on(r"sha256sum -- ", (1, ""))
    r.on(r"stat -c .*--", (1, ""))
    r.on(r"systemctl show .* docker.service", "UnitFileState=enabled\nActiveState=active\n")
    r.on(r"docker image inspect", "sha256:abc\n")
    state = ["@@targets", *targets, "@@fetched", *fetched, "@@keyring", "@@keyring-data"]
    r.on(r"apt-get indextargets", "\n".join([*state, "@@apt-key", "@@end", ""]))
    keyed = base64.b64encode(key).decode()
    r.on(r"echo @@key; if", "@@key\n" + (keyed + "\n" if key else ""))
    shown = f"{version}\n@@candidate\n{version}\n" if installed else f"@@candidate\n{version}\n"
    r.on(r"dpkg-query -W -f=.*docker.io", shown)
    r.on(r"for n in /dev/nvidia", unlinked)
    r.on(r"cdi/nvidia.yaml", "" if spec else (1, ""))
    return r


def context(remote, s, gpus=()) -> Context:
    f = dataclasses.replace(parse_facts((DATA / "debian-12-nspawn.txt").read_text()), user="t")
    if gpus:
        f = dataclasses.replace(f, nvidia_pci=(*f.nvidia_pci, *gpus))
    settings = {"containers": s, "users": users.Settings(), "base": base.Settings()}
    ctx = Context("box", f, settings, gathered={}, strict=True)
    return dataclasses.replace(ctx, gathered=remote.read_all(containers.STEP.reads(ctx), f.user))


def on(**kwargs) -> containers.Settings:
    return containers.Settings(enabled=True, nvidia=True, **kwargs)


def daemon_json(changes) -> dict:
    change = next(c for c in changes if "daemon.json (the other" in c.summary)
    return json.loads(next(a for a in change.actions if isinstance(a, Upload)).content)


def uploaded(changes, dest) -> str:
    return next(
        a.content.decode() for c in changes for a in c.actions if getattr(a, "dest", "") == dest
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("@@candidate\n20.10.24+dfsg1-1+deb12u1\n", (20, 10)),
        ("@@candidate\n26.1.5+dfsg1-9+b1\n", (26, 1)),
        ("24.0.7-0ubuntu4\n@@candidate\n26.1.3-0ubuntu1~24.04.1\n", (24, 0)),  # installed wins
        ("@@candidate\n(none)\n", None),
        ("", None),
    ],
)
def test_the_engine_version_is_read_from_dpkg_then_apt(text, expected):
    assert toolkit.engine_version(text) == expected


@pytest.mark.parametrize(
    "version, mode",
    [((20, 10), "runtime"), ((24, 0), "runtime"), ((25, 0), "cdi"), ((26, 1), "cdi"),
     (None, "runtime")],
)  # fmt: skip
def test_cdi_from_docker_25_on_else_the_runtime(version, mode):
    assert toolkit.mode_for(version) == mode


def test_debian_12_gets_the_repository_the_toolkit_and_the_nvidia_runtime():
    changes = containers.check(context(answers(), on()))
    summaries = [c.summary for c in changes]
    assert summaries[0] == "install 2 packages: docker.io, apparmor"
    # curl, ca-certificates and gpg (the key's check) are in these facts: nothing to install
    assert summaries[1].startswith(
        f"install the key {toolkit.TOOLKIT_KEY[-8:]} of NVIDIA's container toolkit repository "
        f"in {toolkit.KEYRING} (it holds no key), from https://nvidia.github.io/"
        "libnvidia-container/gpgkey"
    )
    assert OFFICIAL_LINE in uploaded(changes, toolkit.LIST_FILE).splitlines()
    pin = uploaded(changes, toolkit.PIN_FILE)
    assert "Pin: origin nvidia.github.io\n" in pin and "Pin-Priority: 600" in pin
    assert "Package: nvidia-container-toolkit nvidia-container-toolkit-base" in pin
    assert "install 1 package: nvidia-container-toolkit" in summaries
    install = next(c for c in changes if c.summary == "install 1 package: nvidia-container-toolkit")
    assert "update" in install.actions[0].command  # the new source's lists first
    written = daemon_json(changes)
    assert written["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime", "args": []}}
    assert "default-runtime" not in written and "features" not in written
    assert any("GPUs through the nvidia runtime, Docker 20.10 has no CDI" in s for s in summaries)
    rule = uploaded(changes, toolkit.UDEV_RULE)
    assert (
        'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", '
        'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"'
    ) in rule.splitlines()
    # no GPU in these facts: no device node to link, no CDI spec to write
    assert not any("nvidia-ctk" in getattr(a, "command", "") for c in changes for a in c.actions)


def test_docker_26_gets_cdi_not_the_runtime():
    changes = containers.check(context(answers(version="26.1.5+dfsg1-9+b1"), on()))
    written = daemon_json(changes)
    assert written["features"] == {"cdi": True} and "runtimes" not in written
    assert any("GPUs through CDI, Docker 26.1" in c.summary for c in changes)


def test_default_runtime_only_when_asked_and_the_users_runtimes_stay():
    r = answers()
    mine = {"runtimes": {"runsc": {"path": "/usr/bin/runsc"}}, "debug": True}
    r.on(r"daemon.json.before-provision", "@@saved\n@@present\n" + json.dumps(mine))
    written = daemon_json(containers.check(context(r, on(nvidia_default_runtime=True))))
    assert written["runtimes"]["runsc"] == {"path": "/usr/bin/runsc"}
    assert written["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert written["default-runtime"] == "nvidia" and written["debug"] is True


def test_a_gpu_host_gets_dev_char_links_and_in_cdi_mode_the_spec():
    r = answers(version="26.1.5+dfsg1-9+b1", unlinked="/dev/nvidia0\n/dev/nvidiactl\n")
    changes = containers.check(context(r, on(), gpus=(GPU,)))
    runs = [a.command for c in changes for a in c.actions if hasattr(a, "command")]
    assert "nvidia-ctk system create-dev-char-symlinks --create-all" in runs
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in runs
    linked = answers(version="26.1.5+dfsg1-9+b1", spec=True)
    runs = [
        a.command
        for c in containers.check(context(linked, on(), gpus=(GPU,)))
        for a in c.actions
        if hasattr(a, "command")
    ]
    assert not any(cmd.startswith("nvidia-ctk") for cmd in runs)


def test_deprecated_nvidia_docker_sources_are_moved_aside():
    old = (
        "https://nvidia.github.io/nvidia-docker/debian11/amd64/\t/\t\t"
        "/etc/apt/sources.list.d/nvidia-docker.list:1"
    )
    changes = containers.check(context(answers(targets=(DEBIAN_MAIN, old)), on()))
    moved = [c for c in changes if "nvidia-docker.list" in c.summary]
    assert moved and "mv -f -- /etc/apt/sources.list.d/nvidia-docker.list" in (
        moved[0].actions[0].command
    )


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory) -> Path:
    """The FIXTURE toolkit repository (tests/hosts/toolkitrepo.py), built once for the module."""
    try:
        return toolkitrepo.build(tmp_path_factory.mktemp("toolkit") / "repo")
    except RuntimeError as exc:
        pytest.skip(str(exc))


def test_a_converged_toolkit_repository_plans_nothing_of_its_own(fixture_repo):
    root = fixture_repo
    key = cudarepo.dearmor((root / "gpgkey").read_bytes())
    fpr = aptrepo.key_fingerprint(root)
    url = "http://10.0.2.2:8080"
    repo = toolkit.repo(url, fpr)
    list_text = render("containers/nvidia-container-toolkit.list.j2", name=repo.name, keyring=repo.keyring, uri=repo.uri,
                       suite="/", components="")  # fmt: skip
    pin_text = render("containers/nvidia-container-toolkit.pin.j2", name=repo.name, origin="10.0.2.2",
                      packages=" ".join(toolkit.PINNED))  # fmt: skip
    ours = f"{url}/stable/deb/amd64/\t/\t\t{toolkit.LIST_FILE}:1"
    r = answers(targets=(DEBIAN_MAIN, ours), fetched=(f"{url}/stable/deb/amd64/",), key=key)
    for dest, text in ((toolkit.LIST_FILE, list_text), (toolkit.PIN_FILE, pin_text)):
        digest = hashlib.sha256(text).hexdigest()
        r.on(rf"stat -c .*-- {dest} &&", f"644 root root\n{digest}  {dest}\n")
    s = on(toolkit_repo_url=url, toolkit_repo_key=fpr)
    ctx = context(r, s)
    assert signedrepo.changes(ctx, repo) == []
    # the same host with the real NVIDIA key expected: the fixture's key is replaced
    assert "install the key" in signedrepo.changes(ctx, toolkit.repo(url, ""))[0].summary


def test_the_key_install_refuses_a_key_without_the_fingerprint(fixture_repo, tmp_path):
    root = fixture_repo
    keyring = tmp_path / "keyrings" / "k.gpg"
    for fpr, ok in ((aptrepo.key_fingerprint(root), True), (toolkit.TOOLKIT_KEY, False)):
        repo = dataclasses.replace(toolkit.repo(f"file://{root}", fpr), keyring=str(keyring))
        run = subprocess.run(["sh", "-c", signedrepo.install_key(repo).command],
                             capture_output=True, text=True)  # fmt: skip
        assert (run.returncode == 0) is ok, run.stderr
        if ok:
            # dearmored: the binary key, which apt reads from a .gpg keyring
            assert cudarepo.key_fingerprints(keyring.read_bytes()) == (fpr,)
            assert not keyring.read_bytes().startswith(b"-----BEGIN")
            keyring.unlink()
        else:
            assert "does not hold the key C95B321B" in run.stderr and not keyring.exists()


def test_the_unlinked_device_read_in_the_real_shell(tmp_path):
    dev = tmp_path / "dev"
    (dev / "char").mkdir(parents=True)
    try:
        for name, major, minor in (("nvidia0", 195, 0), ("nvidiactl", 195, 255),
                                   ("nvidia-uvm", 509, 0)):  # fmt: skip
            subprocess.run(["mknod", str(dev / name), "c", str(major), str(minor)], check=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("mknod needs root")
    (dev / "char" / "195:0").symlink_to("../nvidia0")
    (dev / "nvidia-caps").mkdir()  # a folder, not a device node: ignored
    out = subprocess.run(["sh", "-c", toolkit.unlinked_script(str(dev))],
                         capture_output=True, text=True).stdout  # fmt: skip
    assert sorted(out.split()) == [str(dev / "nvidia-uvm"), str(dev / "nvidiactl")]


def test_off_reads_and_plans_nothing_of_the_toolkit():
    r = answers()
    changes = containers.check(context(r, containers.Settings(enabled=True)))
    assert not any("nvidia" in c.summary for c in changes)
    assert not any("indextargets" in cmd or "docker.io 2>" in cmd for cmd in r.ran)
