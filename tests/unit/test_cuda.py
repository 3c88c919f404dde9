"""cuda.check on recorded facts: NVIDIA's repository mechanics as exact commands and files,
the release's repo directory, mirrors, contrib on Debian only, the distribution's toolkit,
and a converged host that changes nothing."""

import base64
import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision import aptsources, compat, cudarepo
from provision.errors import ConfigError, ProvisionError, Skip
from provision.facts import Package, files, parse_facts
from provision.resources import APT_STAMP
from provision.step import Context
from provision.steps import base, cuda, driver, pytorch
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
OFFICIAL = "https://developer.download.nvidia.com/compute/cuda/repos"
DEBIAN_MAIN = "http://deb.debian.org/debian/\tbookworm\tmain\t/etc/apt/sources.list"
UBUNTU_MAIN = (
    "http://archive.ubuntu.com/ubuntu/\t{codename}\t{component}\t"
    "/etc/apt/sources.list.d/ubuntu.sources"
)
APT_GET = (
    "env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get -y -q "
    "-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef "
    "-o Dpkg::Options::=--force-confold"
)
UPDATE = (
    "( waited=0; while :; do "
    f"out=$({APT_GET} update --error-on=any 2>&1) && {{ printf '%s\\n' \"$out\"; break; }}; "
    'rc=$?; case "$out" in *"/var/lib/apt/lists/lock"*) '
    'if [ "$waited" -ge 600 ]; then printf \'%s\\n\' "$out"; exit $rc; fi; '
    "sleep 5; waited=$((waited + 5));; *) printf '%s\\n' \"$out\"; "
    f"{aptsources.LOCATE}; exit $rc;; esac; done )"
    f" && mkdir -p -- /var/lib/provision && touch -- {APT_STAMP}"
)

TEMPLATE_EXAMPLES = {
    "cuda/cuda.list.j2": {
        "distro": "debian12",
        "arch_dir": "x86_64",
        "repo": f"{OFFICIAL}/debian12/x86_64/",
        "keyring": cuda.KEYRING,
    },
    "cuda/cuda-repository-pin-600.j2": {"origin": "developer.download.nvidia.com"},
    "cuda/cuda.sh.j2": {"version": "12.8", "bin_dir": "/usr/local/cuda-12.8/bin"},
    "cuda/components.sources.j2": {
        "entries": [{"uri": "http://deb.debian.org/debian/", "suites": ["bookworm"]}],
        "components": ["contrib"],
        "keyring": "/usr/share/keyrings/debian-archive-keyring.gpg",
    },
}


def facts(name="debian-12-nspawn", *installed, **fields):
    f = parse_facts((DATA / f"{name}.txt").read_text())
    pkgs = dict(f.packages)
    for package in installed:
        pkg, _, version = package.partition("=")
        pkgs[pkg] = Package(version or "1.0", "ii ")
    return dataclasses.replace(f, packages=pkgs, **fields)


# NVIDIA's key 3bf863cc as cuda-keyring installs it (binary), base64-wrapped like the probe's.
NVIDIA_3BF863CC = cudarepo.dearmor((DATA / "nvidia-cuda-3bf863cc.asc").read_bytes())


def state(targets=(DEBIAN_MAIN,), fetched=(), keyring=False, apt_key=(), key=NVIDIA_3BF863CC):
    """The answer to cuda's one apt-state probe (the keyring file holding `key`)."""
    lines = ["@@targets", *targets, "@@fetched", *fetched, "@@keyring"]
    lines += ["present"] if keyring else []
    lines += ["@@keyring-data"]
    if keyring:
        encoded = base64.b64encode(key).decode()
        lines += [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    return "\n".join([*lines, "@@apt-key", *apt_key, "@@end", ""])


def remote(apt_state, files=None):
    """Probes answered: the apt state, and the files in `files` ({dest: content}) present."""
    r = FakeRemote().on(r"apt-get indextargets", apt_state).on(r"stat -c", (1, ""))
    for dest, content in (files or {}).items():
        r.on(rf"stat -c .*-- {re.escape(dest)} &&", f"644 root root\n{sha256(content)}  {dest}\n")
    return r.on(r"head -c", "old\n")


def check(f, r, **cuda_settings):
    settings = {
        "base": base.Settings(),
        "driver": driver.Settings(),
        "cuda": cuda.Settings(**{"version": "12.8", **cuda_settings}),
        "pytorch": pytorch.Settings(),
    }
    return cuda.check(declared.context(cuda.STEP, f, settings, r))


def commands(change):
    return [getattr(a, "command", None) for a in change.actions]


def uploads(changes):
    return {a.dest: a.content.decode() for c in changes for a in c.actions if hasattr(a, "dest")}


def converged_files(distro="debian12", repo=OFFICIAL + "/debian12/x86_64/", origin=None):
    origin = origin or "developer.download.nvidia.com"
    list_vars = {"distro": distro, "arch_dir": "x86_64", "repo": repo, "keyring": cuda.KEYRING}
    return {
        f"/etc/apt/sources.list.d/cuda-{distro}-x86_64.list": render(
            "cuda/cuda.list.j2", **list_vars
        ),
        cudarepo.PIN: render("cuda/cuda-repository-pin-600.j2", origin=origin),
        cuda.PROFILE: render("cuda/cuda.sh.j2", version="12.8", bin_dir="/usr/local/cuda-12.8/bin"),
    }


# --- NVIDIA's repository, step by step -------------------------------------------------------


def test_debian_fresh_host_gets_contrib_keyring_source_pin_update_toolkit_profile():
    changes = check(facts(), remote(state()))
    assert [c.summary for c in changes] == [
        "write /etc/apt/sources.list.d/provision-components.sources",
        f"install cuda-keyring_1.1-1_all.deb from {OFFICIAL}/debian12/x86_64/",
        "write /etc/apt/sources.list.d/cuda-debian12-x86_64.list",
        "write /etc/apt/preferences.d/cuda-repository-pin-600",
        f"download the package lists of {OFFICIAL}/debian12/x86_64/",
        "install 1 package: cuda-toolkit-12-8",
        "write /etc/profile.d/cuda.sh",
    ]
    deb = "/var/lib/provision/cuda-keyring_1.1-1_all.deb"
    (install,) = commands(changes[1])
    steps = install.split(" && ")
    assert steps[:2] == [
        "mkdir -p -- /var/lib/provision",
        f"curl -fsSL --retry 3 -o {deb} {OFFICIAL}/debian12/x86_64/cuda-keyring_1.1-1_all.deb",
    ]
    assert "--showformat=${Package} ${Version}" in steps[2] and "'cuda-keyring 1.1-1'" in steps[2]
    assert steps[3:] == [f"dpkg --force-confdef --force-confold -i {deb}", f"rm -f -- {deb}"]
    assert "apt-key" not in " ".join(cmd for c in changes for cmd in commands(c) if cmd)
    files = uploads(changes)
    assert files["/etc/apt/sources.list.d/cuda-debian12-x86_64.list"].splitlines()[-1] == (
        f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {OFFICIAL}/debian12/x86_64/ /"
    )
    pin = files[cudarepo.PIN].splitlines()
    assert pin[-3:] == [
        "Package: *",
        "Pin: origin developer.download.nvidia.com",
        "Pin-Priority: 600",
    ]
    assert commands(changes[4]) == [UPDATE]
    assert commands(changes[5]) == [f"{APT_GET} install --no-install-recommends cuda-toolkit-12-8"]
    assert 'export PATH="/usr/local/cuda-12.8/bin${PATH:+:${PATH}}"' in files[cuda.PROFILE]
    assert "LD_LIBRARY_PATH=" not in files[cuda.PROFILE]


def test_debian_contrib_is_added_on_the_hosts_own_mirror_and_suites():
    targets = (
        DEBIAN_MAIN,
        "http://deb.debian.org/debian/\tbookworm-updates\tmain\t/etc/apt/sources.list",
        "http://deb.debian.org/debian-security/\tbookworm-security\tmain\t/etc/apt/sources.list",
    )
    changes = check(facts(), remote(state(targets)))
    sources = uploads(changes)[cudarepo.COMPONENTS_SOURCES]
    stanzas = [s for s in sources.split("\n\n") if "Types:" in s]
    assert [s[s.index("Types:") :].splitlines() for s in stanzas] == [
        [
            "Types: deb",
            "URIs: http://deb.debian.org/debian/",
            "Suites: bookworm bookworm-updates",
            "Components: contrib",
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
        ],
        [
            "Types: deb",
            "URIs: http://deb.debian.org/debian-security/",
            "Suites: bookworm-security",
            "Components: contrib",
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
        ],
    ]


def test_debian_with_contrib_already_gets_no_components_file():
    contrib = DEBIAN_MAIN.replace("\tmain\t", "\tcontrib\t")
    summaries = [c.summary for c in check(facts(), remote(state((DEBIAN_MAIN, contrib))))]
    assert not any("provision-components" in s for s in summaries)


def test_components_file_goes_once_other_sources_have_contrib():
    targets = (
        DEBIAN_MAIN.replace("\tmain\t", "\tcontrib\t"),
        f"http://deb.debian.org/debian/\tbookworm\tcontrib\t{cudarepo.COMPONENTS_SOURCES}",
    )
    changes = check(facts(), remote(state((DEBIAN_MAIN, *targets))))
    backup = f"/var/backups/provision{cudarepo.COMPONENTS_SOURCES}"
    assert changes[0].summary == (
        f"move {cudarepo.COMPONENTS_SOURCES} to {backup} (other sources have its components)"
    )


@pytest.mark.parametrize(
    ("name", "codename", "distro"),
    [("ubuntu-22.04-gpu", "jammy", "ubuntu2204"), ("ubuntu-24.04-fresh", "noble", "ubuntu2404")],
)
def test_ubuntu_uses_its_own_release_repo_and_no_contrib(name, codename, distro):
    targets = (UBUNTU_MAIN.format(codename=codename, component="main"),)
    changes = check(facts(name), remote(state(targets)))
    summaries = [c.summary for c in changes]
    assert summaries[0] == "install 2 packages: curl, ca-certificates"
    assert f"install cuda-keyring_1.1-1_all.deb from {OFFICIAL}/{distro}/x86_64/" in summaries
    assert f"write /etc/apt/sources.list.d/cuda-{distro}-x86_64.list" in summaries
    assert not any("components" in s for s in summaries)
    text = " ".join(cmd for c in changes for cmd in commands(c) if cmd)
    text += " ".join(uploads(changes).values())
    other = {"ubuntu2204", "ubuntu2404", "debian12"} - {distro}
    assert not any(d in text for d in other), "a repository of another release"


def test_mirror_url_is_used_for_download_source_and_pin():
    mirror = "http://mirror.lab:8080/nvidia/cuda/repos"
    changes = check(facts(), remote(state()), repo_url=mirror + "/")
    (install,) = commands(changes[1])
    assert f"{mirror}/debian12/x86_64/cuda-keyring_1.1-1_all.deb" in install
    files = uploads(changes)
    assert (
        f"] {mirror}/debian12/x86_64/ /"
        in files["/etc/apt/sources.list.d/cuda-debian12-x86_64.list"]
    )
    assert "Pin: origin mirror.lab\n" in files[cudarepo.PIN]
    assert "developer.download.nvidia.com" not in install + "".join(files.values())


def test_arm64_uses_the_sbsa_directory_and_other_architectures_are_refused():
    changes = check(facts(arch="arm64"), remote(state()))
    assert f"install cuda-keyring_1.1-1_all.deb from {OFFICIAL}/debian12/sbsa/" in [
        c.summary for c in changes
    ]
    with pytest.raises(compat.Incompatible, match="ppc64el"):
        check(facts(arch="ppc64el"), remote(state()))


def converged_remote(**state_kwargs):
    targets = (
        DEBIAN_MAIN,
        DEBIAN_MAIN.replace("\tmain\t", "\tcontrib\t"),
        f"{OFFICIAL}/debian12/x86_64/\t\t\t/etc/apt/sources.list.d/cuda-debian12-x86_64.list",
    )
    kwargs = {"fetched": (f"{OFFICIAL}/debian12/x86_64/",), "keyring": True, **state_kwargs}
    return remote(state(targets, **kwargs), converged_files())


CONVERGED = ("cuda-keyring=1.1-1", "cuda-toolkit-12-8")


# What a converged NVIDIA-repo Debian 12 host must be asked, from the module docstring's list
# of what the step manages there: apt's configuration, and each file it writes.
MANAGED_ON_DEBIAN = (
    "/etc/apt/sources.list.d/cuda-debian12-x86_64.list",
    "/etc/apt/preferences.d/cuda-repository-pin-600",
    "/etc/profile.d/cuda.sh",
    "/etc/apt/sources.list.d/provision-components.sources",
)


@pytest.mark.parametrize("diffs", [True, False])
def test_converged_host_is_decided_from_its_declared_reads_in_one_batch(diffs):
    r = converged_remote()
    f = facts("debian-12-nspawn", *CONVERGED)
    settings = {
        "base": base.Settings(),
        "driver": driver.Settings(),
        "cuda": cuda.Settings(version="12.8"),
        "pytorch": pytorch.Settings(),
    }
    ctx = Context("box", f, settings, gathered={}, strict=True, diffs=diffs)
    ctx.gathered = r.read_all(cuda.STEP.reads(ctx), f.user)
    assert cuda.check(ctx) == []  # strict: any read it did not declare raises UndeclaredRead
    assert r.commands == 1 and ctx.undeclared == []  # the one batch, nothing else
    batch = r.batches[-1]
    assert [rd for rd in batch if "apt-get indextargets" in rd.command] == [cudarepo.STATE_READ]
    for path in MANAGED_ON_DEBIAN:
        want = files.read(path, diffs)
        assert want in batch, f"{path} is not declared (diffs={diffs})"
        assert want.sudo  # a file's state is read as root: 0600 files too
    assert len(batch) == 1 + len(MANAGED_ON_DEBIAN), batch


def test_lists_not_downloaded_yet_only_updates():
    r = converged_remote(fetched=())
    changes = check(facts("debian-12-nspawn", *CONVERGED), r)
    assert [commands(c) for c in changes] == [[UPDATE]]


def test_old_keyring_or_missing_key_file_reinstalls_the_keyring():
    old = check(
        facts("debian-12-nspawn", "cuda-keyring=1.0-1", "cuda-toolkit-12-8"), converged_remote()
    )
    gone = check(facts("debian-12-nspawn", *CONVERGED), converged_remote(keyring=False))
    for changes in (old, gone):
        assert [c.summary for c in changes] == [
            f"install cuda-keyring_1.1-1_all.deb from {OFFICIAL}/debian12/x86_64/",
            f"download the package lists of {OFFICIAL}/debian12/x86_64/",
        ]


def test_stray_cuda_sources_and_apt_key_keys_are_removed():
    stray = "/etc/apt/sources.list.d/cuda-ubuntu2204-x86_64.list"
    fingerprint = "EB693B3035CD5710E231E123A4B469963BF863CC"
    apt_key = (
        "pub:-:4096:1:A4B469963BF863CC:1650000000:::-:::scSC::::::23::0:",
        f"fpr:::::::::{fingerprint}:",
        "uid:-::::1650000000::AB::cudatools <cudatools@nvidia.com>::::::::::0:",
    )
    r = converged_remote(apt_key=apt_key)
    r.on(r"apt-get indextargets", r.probe("apt-get indextargets").stdout.replace(
        "@@fetched", f"{OFFICIAL}/ubuntu2204/x86_64/\t\t\t{stray}\n@@fetched"
    ))  # fmt: skip
    changes = check(facts("debian-12-nspawn", *CONVERGED), r)
    assert [c.summary for c in changes] == [
        "remove NVIDIA key 3BF863CC from apt-key's keyring",
        f"move {stray} to /var/backups/provision{stray} "
        f"(a CUDA source other than {OFFICIAL}/debian12/x86_64/)",
        f"download the package lists of {OFFICIAL}/debian12/x86_64/",
    ]
    assert commands(changes[0]) == [
        "gpg --batch --yes --no-default-keyring --keyring /etc/apt/trusted.gpg "
        f"--delete-keys {fingerprint}"
    ]


def test_a_cuda_line_in_sources_list_is_refused_not_edited():
    r = converged_remote()
    line = f"{OFFICIAL}/ubuntu2204/x86_64/\t\t\t/etc/apt/sources.list"
    r.on(r"apt-get indextargets", state((DEBIAN_MAIN, line)))
    with pytest.raises(ProvisionError, match=r"sources\.list names a CUDA repository") as error:
        check(facts("debian-12-nspawn", *CONVERGED), r)
    assert error.value.hint.startswith("remove that line")


def test_mirror_next_to_the_distribution_mirror_keeps_the_distribution_sources():
    assert cuda.is_cuda_repo("http://mirror.lab/debian12/x86_64/", "http://mirror.lab")
    assert not cuda.is_cuda_repo("http://mirror.lab/debian/", "http://mirror.lab")
    assert cuda.is_cuda_repo(f"{OFFICIAL}/ubuntu2404/sbsa/", "http://mirror.lab")


def test_broken_apt_sources_stop_with_a_hint():
    r = FakeRemote().on(r"apt-get indextargets", "@@targets\n@@broken\n@@fetched\n@@end\n")
    with pytest.raises(ProvisionError, match="apt cannot read its sources"):
        check(facts(), r)


# --- version choice ------------------------------------------------------------------------------


def test_version_comes_from_compat_when_unset():
    f = facts("ubuntu-22.04-gpu")  # GeForce GTX 1080 Ti: Pascal, cu126 wheels
    want = compat.choose(compat.gpus_from_facts(f)[0], f.os_key).cuda
    targets = (UBUNTU_MAIN.format(codename="jammy", component="main"),)
    summaries = [c.summary for c in check(f, remote(state(targets)), version="")]
    assert want == "12.6"
    assert "install 1 package: cuda-toolkit-12-6" in summaries


def test_cpu_wheels_and_no_version_install_nothing():
    settings = {
        "base": base.Settings(),
        "driver": driver.Settings(),
        "cuda": cuda.Settings(),
        "pytorch": pytorch.Settings(index="cpu"),
    }
    r = FakeRemote()
    f = facts("ubuntu-22.04-gpu")
    assert cuda.check(declared.context(cuda.STEP, f, settings, r)) == []
    assert r.ran == []


def test_disabled_step_probes_nothing():
    r = FakeRemote()
    assert check(facts(), r, enabled=False) == [] and r.ran == []


# --- the distribution's toolkit ------------------------------------------------------------------


def test_debian_distro_toolkit_needs_contrib_and_non_free():
    changes = check(facts(), remote(state()), source="distro", version="")
    assert [c.summary for c in changes] == [
        "write /etc/apt/sources.list.d/provision-components.sources",
        "download the new package lists",
        "install 1 package: nvidia-cuda-toolkit",
    ]
    assert "Components: contrib non-free\n" in uploads(changes)[cudarepo.COMPONENTS_SOURCES]
    assert commands(changes[2]) == [
        f"{APT_GET} install --no-install-recommends nvidia-cuda-toolkit"
    ]


def test_ubuntu_distro_toolkit_with_multiverse_only_installs():
    targets = (
        UBUNTU_MAIN.format(codename="noble", component="main"),
        UBUNTU_MAIN.format(codename="noble", component="multiverse"),
    )
    f = facts("ubuntu-24.04-fresh", apt_stamp=None)
    changes = check(f, remote(state(targets)), source="distro", version="")
    assert [commands(c) for c in changes] == [
        [UPDATE, f"{APT_GET} install --no-install-recommends nvidia-cuda-toolkit"]
    ]


def preflight(f, **cuda_settings):
    settings = {"cuda": cuda.Settings(**cuda_settings)}
    cuda.preflight(Context("box", f, settings, lambda c, sudo: FakeRemote().probe(c)))


def test_preflight_refuses_a_version_the_distribution_does_not_ship():
    with pytest.raises(ConfigError, match=r"nvidia-cuda-toolkit is CUDA 11\.8, not 12\.8"):
        preflight(facts(), source="distro", version="12.8")
    preflight(facts(), source="distro", version="11.8")
    with pytest.raises(compat.Incompatible):
        preflight(facts(os_version="11"), source="nvidia")


def test_version_setting_must_be_x_y():
    cuda.toolkit_version("12.8")
    with pytest.raises(ValueError, match=r"X\.Y"):
        cuda.toolkit_version("12-8")


# --- the keyring download is checked before dpkg sees it ---------------------------------------


def fake_deb(tmp_path, package, version):
    root = tmp_path / f"{package}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: tests <t@invalid>\nDescription: FIXTURE for test_cuda\n"
    )
    deb = tmp_path / f"{package}_{version}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    return deb


def run_keyring_install(tmp_path, served: Path):
    """The real keyring command with curl and dpkg replaced by stubs (curl copies SERVED)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "curl").write_text(
        f'#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done\ncp {served} "$2"\n'
    )
    (stubs / "dpkg").write_text(f'#!/bin/sh\necho "dpkg $*" > {tmp_path}/dpkg-ran\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    repo = cuda.Repo("debian12", "x86_64", "http://127.0.0.1:9/debian12/x86_64/")
    downloads = tmp_path / "downloads"
    command = cudarepo.keyring_install(repo, str(downloads)).command
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
    return proc, downloads / cudarepo.KEYRING_DEB


@pytest.mark.skipif(not Path("/usr/bin/dpkg-deb").exists(), reason="needs dpkg-deb")
def test_keyring_download_that_is_not_cuda_keyring_1_1_1_is_refused_and_deleted(tmp_path):
    for served, says in [
        (fake_deb(tmp_path, "cuda-keyring", "1.0-1"), "cuda-keyring 1.0-1"),
        (tmp_path / "error.html", "not a .deb"),
    ]:
        if not served.exists():
            served.write_text("<html>404</html>\n")
        proc, deb = run_keyring_install(tmp_path, served)
        assert proc.returncode == 1
        assert f"is not cuda-keyring 1.1-1 (it says: {says}); refused and deleted it" in proc.stderr
        assert not deb.exists() and not (tmp_path / "dpkg-ran").exists()
        (tmp_path / "bin").rename(tmp_path / f"bin-{says.replace(' ', '_')}")


@pytest.mark.skipif(not Path("/usr/bin/dpkg-deb").exists(), reason="needs dpkg-deb")
def test_keyring_download_that_is_cuda_keyring_1_1_1_is_installed_and_deleted(tmp_path):
    proc, deb = run_keyring_install(tmp_path, fake_deb(tmp_path, "cuda-keyring", "1.1-1"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dpkg-ran").read_text() == (
        f"dpkg --force-confdef --force-confold -i {deb}\n"
    )
    assert not deb.exists()


# --- verify ------------------------------------------------------------------------------------


class NoProfileHost:
    """A testinfra stand-in with no /etc/profile.d/cuda.sh."""

    def file(self, path):
        return type("File", (), {"exists": False, "content_string": ""})()


@pytest.mark.parametrize("check_", cuda.STEP.verify)
def test_verify_skips_when_no_toolkit_was_chosen(check_):
    with pytest.raises(Skip, match=re.escape(cuda.NO_TOOLKIT)):
        check_(NoProfileHost(), cuda.Settings())


def test_nvidia_keys_are_found_by_user_id_not_by_subkey():
    lines = [
        "pub:-:4096:1:A4B469963BF863CC:1::::::scSC:",
        "fpr:::::::::EB693B3035CD5710E231E123A4B469963BF863CC:",
        "uid:-::::1::AB::cudatools <cudatools@nvidia.com>:",
        "fpr:::::::::1111111111111111111111111111111111111111:",
        "pub:-:4096:1:0123456789ABCDEF:1::::::scSC:",
        "fpr:::::::::2222222222222222222222222222222222222222:",
        "uid:-::::1::CD::Debian Archive <ftpmaster@debian.org>:",
    ]
    assert cuda.nvidia_fingerprints(lines) == ("EB693B3035CD5710E231E123A4B469963BF863CC",)


class KeyringHost:
    """A testinfra stand-in: /etc/apt/trusted.gpg of `size` bytes that gpg cannot read."""

    def __init__(self, size):
        self.size = size
        self.ran = []

    def file(self, path):
        return type("File", (), {"exists": True, "size": self.size})()

    def run(self, command):
        self.ran.append(command)
        return type("Run", (), {"rc": 2, "stdout": "", "stderr": "no valid OpenPGP data found"})()


def test_verify_no_apt_key_passes_the_empty_keyring_the_repair_leaves(monkeypatch):
    """Issue 13 §2: deleting the last NVIDIA key leaves /etc/apt/trusted.gpg empty; check reads
    that as no key (`[ -s ]`), so verify must too, not as an unreadable keyring."""
    monkeypatch.setattr(cuda, "nvidia_only", lambda host, s: "12.8")
    empty = KeyringHost(0)
    cuda.verify_no_apt_key(empty, cuda.Settings())
    assert empty.ran == []
    with pytest.raises(AssertionError, match="cannot read"):
        cuda.verify_no_apt_key(KeyringHost(263), cuda.Settings())


# --- declared reads: check and preflight read nothing else ------------------------------------

FACT_FILES = ("debian-12-docker", "debian-12-nspawn", "ubuntu-22.04-gpu", "ubuntu-24.04-fresh")


@pytest.mark.parametrize("facts_file", FACT_FILES)
@pytest.mark.parametrize(
    "cuda_settings",
    [{}, {"version": "12.8"}, {"source": "distro"}, {"repo_url": "http://mirror.lab/cuda"}],
)
@pytest.mark.parametrize("pytorch_index", ["", "cpu"])
@pytest.mark.parametrize("answers", ["bare", "converged"])
def test_check_and_preflight_read_only_what_cuda_declares(
    facts_file, cuda_settings, pytorch_index, answers
):
    f = facts(facts_file, *CONVERGED)
    s = {
        "base": base.Settings(),
        "driver": driver.Settings(require_gpu=False),
        "cuda": cuda.Settings(**cuda_settings),
        "pytorch": pytorch.Settings(index=pytorch_index),
    }
    r = converged_remote() if answers == "converged" else remote(state(targets=()))
    declared.check_declared(cuda.STEP, f, s, r)
