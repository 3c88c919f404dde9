"""doctor: parsers and findings on recorded outputs of real machines (tests/data/doctor/),
one test per warn/fail finding, and the CLI over a FakeRemote."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from provision import compat, doctor
from provision.facts import PciDevice, parse_facts

DATA = Path(__file__).parent.parent / "data" / "doctor"
HEALTHY = "ubuntu-24.04-2x4090"  # 2 x RTX 4090 workstation, hardened, everything right
BUDGET = "ubuntu-22.04-budget"  # 3060 + 3090 (x4 slot), 32 GB, HDD, full disk, DHCP, ...
SECURE_BOOT = "debian-12-secureboot"  # DKMS driver, key not enrolled, nouveau, no headers
MISMATCH = "ubuntu-24.04-mismatch"  # libraries upgraded under the loaded module


def load(name: str):
    text = (DATA / f"{name}.txt").read_text()
    return doctor.parse(text), parse_facts(text)


def run(name: str, settings: doctor.Settings | None = None, **kwargs) -> list[doctor.Finding]:
    data, facts = load(name)
    return doctor.findings(data, settings or doctor.Settings(), facts, **kwargs)


def host(**changes: dict) -> dict:
    """A host's settings by step key: every step's defaults, with these fields changed."""
    by_key = doctor.default_settings()
    for key, fields in changes.items():
        by_key[key] = dataclasses.replace(by_key[key], **fields)
    return by_key


def area(items: list[doctor.Finding], name: str) -> doctor.Finding:
    found = [f for f in items if f.area == name]
    assert len(found) == 1, f"{name}: {[f.area for f in items]}"
    return found[0]


# --- parsers -------------------------------------------------------------------------------


def test_lspci_links_old_and_new_formats_and_only_display_controllers():
    text = (
        "17:00.0 VGA compatible controller [0300]: NVIDIA Corporation GK208 [10de:1287]\n"
        "\t\tLnkCap:\tPort #0, Speed 5GT/s, Width x8, ASPM L0s L1, Exit Latency L0s <512ns\n"
        "\t\tLnkSta:\tSpeed 2.5GT/s, Width x8, TrErr- Train- SlotClk+ DLActive- BWMgmt-\n"
        "\t\tLnkSta2: Current De-emphasis Level: -6dB, EqualizationComplete-\n"
        "17:00.1 Audio device [0403]: NVIDIA Corporation GK208 HDMI/DP Audio [10de:0e0f]\n"
        "\t\tLnkCap:\tPort #0, Speed 5GT/s, Width x8\n"
        "\t\tLnkSta:\tSpeed 5GT/s, Width x8\n"
        "65:00.0 3D controller [0302]: NVIDIA Corporation GA100 [A100 PCIe 40GB] [10de:20f1]\n"
        "\t\tLnkCap:\tPort #0, Speed 16GT/s, Width x16, ASPM not supported\n"
        "\t\tLnkSta:\tSpeed 8GT/s (downgraded), Width x8 (downgraded)\n"
    )
    links = doctor.parse_lspci_links(text)
    assert links == {
        "0000:17:00.0": doctor.Link("0000:17:00.0", 1, 8, 2, 8),
        "0000:65:00.0": doctor.Link("0000:65:00.0", 3, 8, 4, 16),
    }


def test_sysfs_links_and_speeds():
    links = doctor.parse_sysfs_links("0000:05:00.0|8.0 GT/s PCIe|4|16.0 GT/s PCIe|16\n")
    assert links["0000:05:00.0"] == doctor.Link("0000:05:00.0", 3, 4, 4, 16)
    assert doctor.gen_of_speed("32.0 GT/s PCIe") == 5
    assert doctor.gen_of_speed("Unknown") is None


def test_nvidia_smi_csv_with_not_supported_fields():
    gpus = doctor.parse_nvidia_smi(
        "0, NVIDIA GeForce RTX 3090, 00000000:05:00.0, 24576, 350.00, 3, 3, 4, 16, 570.172.08\n"
        "1, Tesla T4, 00000000:3B:00.0, 15360, [N/A], 1, 3, 16, 16, 570.172.08\n"
        "Failed to initialize NVML: Unknown Error\n"
    )
    assert [g.bus_id for g in gpus] == ["0000:05:00.0", "0000:3b:00.0"]
    assert gpus[0].memory_mib == 24576 and gpus[0].power_limit_w == 350.0
    assert gpus[1].power_limit_w is None and gpus[1].gen_max == 3


def test_sshd_config_first_match_wins_and_match_blocks_are_ignored():
    # As gather.SSHD_CONFIG_READ prints it; what sshd makes of such files: tests/data/sshd
    # (sorts-first, match, local-*) and the recordings' tests below.
    text = (
        "# file: /etc/ssh/sshd_config\nInclude /etc/ssh/sshd_config.d/*.conf\n"
        "PasswordAuthentication no\nMatch User backup\n  PermitRootLogin yes\n"
        "# glob: /etc/ssh/sshd_config.d/*.conf\n"
        "# match: /etc/ssh/sshd_config.d/50-cloud-init.conf\n"
        "# file: /etc/ssh/sshd_config.d/50-cloud-init.conf\nPasswordAuthentication yes\n"
    )
    assert doctor.parse_sshd_config(text) == {
        "passwordauthentication": "yes",  # the drop-in, read at the Include line
        "permitrootlogin": "prohibit-password",  # the default: the Match block is not global
    }
    # Without an Include line sshd reads no drop-in (recorded: no-include, local-no-include-line).
    no_include = text.replace("Include /etc", "#Include /etc")
    assert doctor.parse_sshd_config(no_include)["passwordauthentication"] == "no"
    # A file sshd reads that the user cannot: what it could set is unknown, not the default.
    private = (
        "# file: /etc/ssh/sshd_config\nPermitRootLogin no\n"
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n"
        "# glob: /etc/ssh/sshd_config.d/*.conf\n# match: /etc/ssh/sshd_config.d/00-private.conf\n"
        "# unreadable: /etc/ssh/sshd_config.d/00-private.conf\n"
    )
    assert doctor.parse_sshd_config(private) == {"permitrootlogin": "no"}


def test_listeners_ipv4_ipv6_wildcard_and_zone():
    listeners = doctor.parse_listeners(
        "LISTEN 0 2048 127.0.0.1:6006 0.0.0.0:*\nLISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*\n"
        "LISTEN 0 2048 [::1]:6007 [::]:*\nLISTEN 0 2048 *:6008 *:*\n"
    )
    assert [(x.address, x.port) for x in listeners] == [
        ("127.0.0.1", 6006),
        ("127.0.0.53", 53),
        ("::1", 6007),
        ("*", 6008),
    ]


def test_mounts_decode_spaces_and_cpu_cores_prefer_dmidecode():
    mounts = doctor.parse_mounts("/dev/sdb1 /mnt/my\\040data ext4 rw 0 0\n")
    assert mounts == {"/mnt/my data": ("/dev/sdb1", "ext4")}
    threads, model, cores = doctor.parse_cpu(
        "64\nmodel name\t: AMD EPYC 7543 32-Core Processor\ncpu cores\t: 32\nphysical id\t: 0\n"
        "physical id\t: 1\n",
        "",
    )
    assert (threads, model, cores) == (64, "AMD EPYC 7543 32-Core Processor", 64)
    assert doctor.parse_cpu("8\n", "\tCore Count: 4\n\tCore Count: 4\n")[2] == 8


def test_root_sections_replace_the_login_users_only_where_not_empty():
    data, _facts = load(HEALTHY)
    assert data.sshd_source == "sshd -T"
    assert data.links["0000:41:00.0"] == doctor.Link("0000:41:00.0", 4, 16, 4, 16)
    sb_data, _ = load(SECURE_BOOT)  # sudo needs a password: no root sections
    assert sb_data.sshd_source == "config files" and sb_data.cores == 16


# --- the healthy box: everything ok -------------------------------------------------------


def test_healthy_workstation_is_all_ok():
    items = run(HEALTHY, doctor.Settings(psu_watts=2000, data_mount="/data"))
    bad = [f for f in items if f.status != "ok"]
    assert bad == []
    assert area(items, "GPU 0").reason == (
        "GeForce RTX 4090 (41:00.0, 10de:2684): Ada, 24 GB VRAM, compute 8.9, tensor cores"
    )
    assert area(items, "GPU stack").reason.startswith(
        "compat chooses driver 580 (open, Ubuntu's signed modules), CUDA 13.0"
    )
    assert area(items, "PCIe 1").reason == "c1:00.0: x16 (of x16), gen 4 (of 4)"
    assert area(items, "power").reason == (
        "1320 W of a 2000 W PSU (66%): GPUs 900 W + CPU ~320 W (estimate: 32 cores x 10 W) "
        "+ 100 W base"
    )
    assert area(items, "Secure Boot").reason == "on, and the nvidia module is loaded (it is signed)"
    assert area(items, "TensorBoard").reason.startswith("port 6006 listens on loopback only")
    assert not doctor.failed(items)


# --- one test per warn / fail -------------------------------------------------------------


def test_gpu_in_an_x4_slot_warns_with_the_slot_fix():
    f = area(run(BUDGET), "PCIe 1")
    assert f.status == "warn"
    assert f.reason.startswith("05:00.0: the link runs at x4 of the card's x16")
    assert f.fix.startswith("move the card to a slot wired x16")


def test_link_below_the_cards_generation_warns_that_idle_cards_downtrain():
    f = area(run(BUDGET), "PCIe 0")
    assert f.status == "warn"
    assert f.reason == f"01:00.0: gen 1 of 4: {doctor.LOAD_HINT}"
    assert f.fix.startswith("check under load (nvidia-smi -q -d PCIE while training)")


def test_ram_below_twice_the_vram_warns():
    f = area(run(BUDGET), "RAM")
    assert f.status == "warn"
    assert f.reason.startswith("31 GB RAM for 36 GB VRAM (rule: 2 x VRAM = 72 GB)")
    assert f.fix == "add RAM to at least 72 GB, or use fewer DataLoader workers"


def test_no_swap_warns():
    f = area(run(BUDGET), "swap")
    assert f.status == "warn"
    assert f.reason.startswith("no swap")
    assert "mkswap /swapfile" in f.fix and "/etc/fstab" in f.fix


def test_psu_too_small_fails_and_close_to_the_rating_warns():
    f = area(run(BUDGET, doctor.Settings(psu_watts=650)), "power")
    assert f.status == "fail"
    assert f.reason == (
        "700 W of a 650 W PSU (108%): GPUs 520 W + CPU ~80 W (estimate: 8 cores x 10 W) "
        "+ 100 W base: above the PSU's rating"
    )
    assert f.fix.startswith("a PSU of at least 900 W")
    assert "doctor.cpu_tdp_watts" in f.fix
    near = area(run(BUDGET, doctor.Settings(psu_watts=800, cpu_tdp_watts=65)), "power")
    assert near.status == "warn"
    assert near.reason.endswith("CPU 65 W + 100 W base: above 80%")
    assert "doctor.cpu_tdp_watts" not in near.fix


def test_power_is_skipped_without_a_psu_rating_or_without_nvidia_smi():
    f = area(run(BUDGET), "power")
    assert (f.status, f.reason) == ("skip", "skipped: the PSU rating is not set")
    assert f.fix == "set doctor.psu_watts=850 (your PSU's rating) in the inventory"
    g = area(run(MISMATCH, doctor.Settings(psu_watts=1000)), "power")
    assert g.status == "skip" and "need nvidia-smi" in g.reason


def test_root_on_a_hdd_warns():
    f = area(run(BUDGET), "root disk")
    assert f.status == "warn"
    assert f.reason.startswith("/ is on a rotational disk (sda2)")
    assert f.fix.startswith("install the OS on an SSD/NVMe")


def test_nearly_full_disk_fails_and_below_the_wanted_free_space_warns():
    f = area(run(BUDGET), "free space")
    assert f.status == "fail"
    assert f.reason == "3.1 GB free on / of 983 GB: apt and dpkg will fail"
    assert f.fix.startswith("free space (sudo apt-get clean")
    g = area(run(HEALTHY, doctor.Settings(min_free_gb=2000)), "free space")
    assert g.status == "warn"
    assert g.reason == "1466 GB free on / of 1967 GB (doctor.min_free_gb = 2000)"


def test_data_disk_not_mounted_fails():
    f = area(run(SECURE_BOOT, doctor.Settings(data_mount="/data")), "data disk")
    assert f.status == "fail"
    assert f.reason == "nothing is mounted at /data (doctor.data_mount)"
    assert "/etc/fstab by UUID" in f.fix
    assert [x for x in run(SECURE_BOOT) if x.area == "data disk"] == []


def test_secure_boot_with_an_unenrolled_dkms_module_fails():
    f = area(run(SECURE_BOOT), "Secure Boot")
    assert f.status == "fail"
    assert f.reason.startswith("on, and the nvidia module built by DKMS is signed with a key")
    assert f.fix.startswith("enrol the DKMS key: sudo mokutil --import /var/lib/dkms/mok.pub")


def test_secure_boot_before_the_dkms_driver_warns_and_ubuntu_signed_modules_are_ok():
    data, facts = load(SECURE_BOOT)
    before = dataclasses.replace(data, dkms_nvidia=())
    f = area(doctor.findings(before, doctor.Settings(), facts), "Secure Boot")
    assert f.status == "warn"
    assert f.reason.startswith("on: the driver from nvidia is built by DKMS")
    enrolled = dataclasses.replace(data, mok_enrolled=True)
    ok = area(doctor.findings(enrolled, doctor.Settings(), facts), "Secure Boot")
    assert (ok.status, ok.reason) == ("ok", "on; the DKMS signing key is enrolled (MOK)")
    data, facts = load(MISMATCH)
    unloaded = dataclasses.replace(data, modules=())
    signed = area(doctor.findings(unloaded, doctor.Settings(), facts), "Secure Boot")
    assert signed.status == "ok" and "Ubuntu's signed precompiled" in signed.reason


def test_nouveau_loaded_with_the_driver_installed_fails():
    f = area(run(SECURE_BOOT), "nouveau")
    assert f.status == "fail"
    assert f.reason.startswith("loaded although the NVIDIA driver is installed")
    assert f.fix.startswith("provision driver blacklists nouveau and runs update-initramfs -u")


def test_nouveau_loaded_before_the_driver_warns():
    data, facts = load(SECURE_BOOT)
    bare = dataclasses.replace(facts, packages={})
    f = area(doctor.findings(data, doctor.Settings(), bare), "nouveau")
    assert f.status == "warn"
    assert f.reason.startswith("loaded: it drives the card now")


def test_missing_headers_for_the_running_kernel_warn():
    f = area(run(SECURE_BOOT), "headers")
    assert f.status == "warn"
    assert f.reason == (
        "none for the running kernel 6.1.0-40-amd64: DKMS cannot build the nvidia module for it"
    )
    assert f.fix.startswith("sudo apt-get install linux-headers-6.1.0-40-amd64")


def test_pending_reboot_warns_and_names_the_packages():
    f = area(run(BUDGET), "reboot")
    assert f.status == "warn"
    assert f.reason.startswith("a reboot is pending (for linux-image-6.8.0-51-generic, linux-base)")
    assert f.fix.startswith("sudo reboot")


def test_unheld_driver_packages_warn():
    f = area(run(BUDGET), "held packages")
    assert f.status == "warn"
    assert f.reason.startswith("not held: libnvidia-compute-570, ")
    assert "nvidia-container-toolkit" not in f.reason  # not part of a driver branch
    assert f.fix.startswith("sudo apt-mark hold libnvidia-compute-570 ")
    assert area(run(HEALTHY), "held packages").reason == "all 7 NVIDIA driver packages held"


def test_driver_library_mismatch_fails_with_reboot_fix():
    f = area(run(MISMATCH), "driver")
    assert f.status == "fail"
    assert f.reason == (
        "nvidia-smi: Driver/library version mismatch (module 550.144.03 loaded, "
        "libraries 550.163.01)"
    )
    assert f.fix.startswith("reboot to load the new module")


def test_mismatch_is_seen_from_the_packages_without_nvidia_smi():
    data, facts = load(MISMATCH)
    quiet = dataclasses.replace(data, smi_present=False, smi_output="", smi_exit=0)
    f = area(doctor.findings(quiet, doctor.Settings(), facts), "driver")
    assert f.status == "fail"
    assert f.reason == (
        "Driver/library version mismatch: module 550.144.03 loaded, libraries 550.163.01"
    )


def test_driver_installed_but_not_loaded_warns():
    f = area(run(SECURE_BOOT), "driver")
    assert (f.status, f.reason) == ("warn", "installed but the nvidia module is not loaded")
    assert f.fix.startswith("reboot; if it still is not loaded")


def test_dhcp_address_warns():
    f = area(run(BUDGET), "address")
    assert f.status == "warn"
    assert f.reason.startswith("192.168.1.73/24 on enp4s0 is leased by DHCP")
    assert "network.address" in f.fix


def test_password_ssh_warns():
    f = area(run(BUDGET), "sshd")
    assert f.status == "warn"
    assert f.reason == "password login is on: bots guess passwords all day (sshd -T)"
    assert f.fix.startswith("put your key on the box (ssh-copy-id), then provision ssh")
    g = area(run(MISMATCH), "sshd")
    assert g.reason.startswith("password login is on; root may log in with a password")


def test_tensorboard_on_every_address_warns_unless_bind_all_is_set():
    f = area(run(BUDGET), "TensorBoard")
    assert f.status == "warn"
    assert f.reason.startswith("port 6006 is open on 0.0.0.0 (every address)")
    assert f.fix.startswith("tensorboard.bind_all=false")
    meant = area(run(BUDGET, host_settings=host(tensorboard={"bind_all": True})), "TensorBoard")
    assert meant.status == "ok" and "as tensorboard.bind_all asks" in meant.reason
    other_port = area(run(BUDGET, host_settings=host(tensorboard={"port": 6007})), "TensorBoard")
    assert other_port.reason == "nothing listens on port 6007"


def test_unknown_card_warns_and_compat_is_not_asked():
    data, facts = load(SECURE_BOOT)
    odd = dataclasses.replace(facts, nvidia_pci=(PciDevice("0000:01:00.0", "ffff", "0x030000"),))
    items = doctor.findings(data, doctor.Settings(), odd)
    gpu = area(items, "GPU 0")
    assert gpu.status == "warn" and gpu.reason.endswith("is not in compat's card table")
    assert gpu.fix.startswith("give the architecture: provision compat --host HOST --arch")
    assert area(items, "GPU stack").status == "warn"
    assert area(items, "RAM").status == "skip"


def test_a_request_compat_refuses_fails():
    items = run(BUDGET, host_settings=host(cuda={"version": "13.0"}, driver={"branch": 535}))
    f = area(items, "GPU stack")
    assert f.status == "fail" and f.reason.startswith("compat refuses: ")
    assert f.fix


def test_no_gpu_one_warning_and_the_gpu_findings_left_out():
    data, facts = load(SECURE_BOOT)
    no_gpu = dataclasses.replace(facts, nvidia_pci=())
    items = doctor.findings(data, doctor.Settings(), no_gpu)
    f = area(items, "GPU")
    assert (f.status, f.reason.split(" (")[0]) == ("warn", "no NVIDIA GPU found")
    names = [x.area for x in items]
    for gpu_only in ("GPU stack", "PCIe 0", "held packages", "driver"):
        assert gpu_only not in names
    assert area(items, "RAM").reason == "63 GB RAM (no GPU: the 2 x VRAM rule does not apply yet)"
    assert area(items, "Secure Boot").status == "ok"  # matters once a driver comes


def test_turing_gtx_16_has_no_tensor_cores():
    assert not doctor.has_tensor_cores(compat.gpu_by_id("1f82"))  # GTX 1650
    assert doctor.has_tensor_cores(compat.gpu_by_id("1e04"))  # RTX 2080 Ti
    assert not doctor.has_tensor_cores(compat.gpu_by_id("1b06"))  # GTX 1080 Ti


# --- reading and showing ------------------------------------------------------------------


def test_render_shows_the_fix_only_for_problems_and_counts():
    items = run(BUDGET)
    text = doctor.render("budget", items)
    assert "fix: move the card to a slot wired x16" in text
    assert text.splitlines()[-1].strip() == "9 ok, 1 skip, 10 warn, 1 fail"  # + Jupyter (issue 20)
    assert doctor.failed(items)


def test_settings_refuse_negative_watts():
    from provision.config import build_settings
    from provision.errors import ConfigError
    from provision.inventory import Value

    with pytest.raises(ConfigError, match=r"doctor\.psu_watts: -5 must be 0 or more"):
        build_settings([{"doctor.psu_watts": Value("-5", "inventory.ini:3")}])


def test_gather_runs_the_root_script_only_where_sudo_works():
    from fakes import FakeRemote

    text = (DATA / f"{SECURE_BOOT}.txt").read_text()
    facts = parse_facts(text)  # sudo needs a password and none was given
    remote = FakeRemote([(r"@@nvidia-smi", text)])
    assert doctor.gather(remote, facts) == text
    assert len(remote.ran) == 1 and "sudo" not in remote.ran[0]
    with_sudo = dataclasses.replace(facts, sudo="nopasswd")
    remote = FakeRemote([(r"@@dmidecode", "@@sshd-t\npasswordauthentication no\n@@end\n"),
                         (r"@@nvidia-smi", text)])  # fmt: skip
    remote.is_root = False
    merged = doctor.gather(remote, with_sudo)
    assert doctor.parse(merged).sshd_source == "sshd -T"


def test_cli_doctor_table_json_and_exit_code(tmp_path, monkeypatch):
    from fakes import FakeRemote
    from provision import remote as remote_mod
    from provision.cli import cli

    text = (DATA / f"{BUDGET}.txt").read_text()
    user, _, root = text.partition("\n@@root\n")
    answers = [(r"@@dmidecode", root), (r"@@pcie", user), (r"@@os-release", user)]
    monkeypatch.setattr(remote_mod, "connect", lambda *a, **k: FakeRemote(answers))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("budget ansible_host=192.0.2.7 doctor.psu_watts=650\n")
    runner = CliRunner()
    table = runner.invoke(cli, ["doctor", "-i", str(inventory), "--host", "budget"])
    assert table.exit_code == 1, table.output
    assert "power" in table.output and "700 W of a 650 W PSU" in table.output
    as_json = runner.invoke(cli, ["doctor", "-i", str(inventory), "--host", "budget", "--json"])
    assert as_json.exit_code == 1
    rows = json.loads(as_json.output)["budget"]
    assert {"area": "swap", "status": "warn"}.items() <= rows[[r["area"] for r in rows].index(
        "swap")].items()  # fmt: skip


# --- reads shared with the facts readers: checked on real sshd and sysfs output ------------

SSHD = Path(__file__).parent.parent / "data" / "sshd"  # a real sshd's output (record.sh)


def sshd_recording(name: str) -> tuple[str, dict[str, str]]:
    """(`sshd -T`'s output, {file: content} of the files sshd read) of a recording."""
    text = (SSHD / f"{name}.txt").read_text()
    effective = text.split("\n@@effective\n", 1)[1].split("\n@@trace\n", 1)[0]
    files: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@file "):
            current = files.setdefault(line[len("@@file ") :], [])
        elif line.startswith("@@"):
            current = None if not line.startswith("@@stat ") else current
        elif current is not None:
            current.append(line)
    return effective, {path: "\n".join(lines) for path, lines in files.items()}


@pytest.mark.parametrize(
    ("name", "password", "root"),
    [
        ("fresh", "no", "without-password"),
        ("sorts-first", "yes", "without-password"),  # 00-aaa.conf sorts before ours
        ("main-edited", "no", "yes"),  # PermitRootLogin yes above the Include line
        ("no-include", "yes", "without-password"),
    ],
)
def test_sshd_t_of_a_real_sshd_is_read_as_it_printed(name, password, root):
    effective, _files = sshd_recording(name)
    data = doctor.parse(f"@@end\n@@root\n@@sshd-t\n{effective}\n@@end\n")
    assert data.sshd == {"passwordauthentication": password, "permitrootlogin": root}
    assert data.sshd_source == "sshd -T"
    finding = area(doctor.findings(data, doctor.Settings(), load(HEALTHY)[1]), "sshd")
    assert (finding.status == "ok") == (password == "no" and root != "yes")


def _read_as_the_user_script_does(files: dict[str, str], tmp_path: Path) -> str:
    """The @@sshd-config section gather's own script prints over these files (paths under
    /etc/ssh), laid out under tmp_path: /etc/ssh in the script and in the files points there."""
    import importlib
    import subprocess

    # provision.doctor re-exports the function gather over its module's name.
    gather_mod = importlib.import_module("provision.doctor.gather")

    root = tmp_path / "root"
    for path, content in files.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content.replace("/etc/ssh", f"{root}/etc/ssh") + "\n")
    script = gather_mod.SSHD_CONFIG_READ.replace("/etc/ssh", f"{root}/etc/ssh")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.replace(str(root), "")


def sshd_disk(name: str) -> dict[str, str]:
    """The files on disk when a recording was made, read by sshd or not."""
    text = (SSHD / f"{name}.txt").read_text()
    _effective, files = sshd_recording(name)
    disk = {}
    for part in text.split("\n@@disk ")[1:]:
        path, _, content = part.partition("\n")
        disk[path] = content.removesuffix("\n")
    if not disk and name == "no-include":  # recorded without @@disk; record.sh had left
        # converged's drop-ins there, which sshd did not read (no Include line)
        disk = {**sshd_recording("converged")[1], **files}
    return disk or files


@pytest.mark.parametrize(
    "name",
    [
        "fresh",
        "converged",
        "sorts-first",  # 00-aaa.conf sorts before ours
        "match",  # PasswordAuthentication yes only inside `Match User tester`
        "main-edited",  # PermitRootLogin yes above the Include line
        "no-include",  # sshd_config without an Include line: no drop-in is read
        "include-missing",  # a drop-in's Include of a file that is not there
        "local-above-include",  # PasswordAuthentication yes above the Include line
        "local-below-include",  # a drop-in beats the lines below the Include line
        "local-match-ends-with-its-file",  # B-match.conf's Match block ends at its end
        "local-nested-and-in-match",  # Include in a drop-in, and inside a Match block
        "local-no-include-line",
    ],
)
def test_config_file_fallback_agrees_with_the_real_sshd(name, tmp_path):
    effective, _files = sshd_recording(name)
    real = doctor.parse_sshd_t(effective)
    section = _read_as_the_user_script_does(sshd_disk(name), tmp_path)
    data = doctor.parse(f"@@sshd-config\n{section}@@end\n")
    assert data.sshd_source == "config files"
    seen = dict(data.sshd)
    seen["permitrootlogin"] = seen["permitrootlogin"].replace(
        "prohibit-password", "without-password"
    )
    assert seen == real


def test_config_file_fallback_finds_a_relative_include_in_etc_ssh(tmp_path):
    """sshd_config(5): "Files without absolute paths are assumed to be in /etc/ssh"."""
    files = {
        "/etc/ssh/sshd_config": "Include sshd_config.d/*.conf\nPasswordAuthentication yes",
        "/etc/ssh/sshd_config.d/50-keys.conf": "PasswordAuthentication no",
    }
    section = _read_as_the_user_script_does(files, tmp_path)
    assert doctor.parse(f"@@sshd-config\n{section}@@end\n").sshd["passwordauthentication"] == "no"


def test_config_file_fallback_does_not_guess_past_a_file_it_cannot_read(tmp_path):
    """private: sshd read a drop-in only root may read (it turns password login on). The user
    cannot read it (here a root test sees it: its section is the user's, as printed for one)."""
    effective, files = sshd_recording("private")
    assert doctor.parse_sshd_t(effective)["passwordauthentication"] == "yes"
    private = "/etc/ssh/sshd_config.d/00-private.conf"
    files = {**files, private: ""}
    section = _read_as_the_user_script_does(files, tmp_path)
    section = section.replace(f"# file: {private}\n", f"# unreadable: {private}\n")
    data = doctor.parse(f"@@sshd-config\n{section}@@end\n")
    assert "passwordauthentication" not in data.sshd
    finding = area(doctor.findings(data, doctor.Settings(), load(HEALTHY)[1]), "sshd")
    assert finding.status == "skip"


def test_user_script_reads_the_link_files_of_the_facts_slots_and_quotes_them(tmp_path):
    import shutil
    import subprocess

    devices = Path("/sys/bus/pci/devices")
    with_link = sorted(d for d in devices.glob("*") if (d / "current_link_width").exists())
    hostile = f"0000:01:00.0$(touch {tmp_path}/pwned)"
    slots = [hostile, *(d.name for d in with_link[:1])]
    _data, facts = load(BUDGET)
    facts = dataclasses.replace(
        facts, nvidia_pci=tuple(PciDevice(s, "2204", "0x030000") for s in slots)
    )
    script = doctor.user_script(facts)
    proc = subprocess.run(
        [shutil.which("sh") or "sh", "-c", script], capture_output=True, text=True
    )
    assert not (tmp_path / "pwned").exists()
    data = doctor.parse(proc.stdout)
    if not with_link:
        assert data.links == {}
        return
    d = with_link[0]
    width = (d / "current_link_width").read_text().strip()
    assert data.links[d.name].width == (int(width) if width.isdigit() else None)
    assert list(data.links) == [d.name]


def test_services_are_the_ones_steps_declare_with_the_hosts_settings(monkeypatch):
    from provision.doctor import rules
    from provision.step import Step

    @dataclasses.dataclass(frozen=True)
    class LabSettings:
        listen_port: int = 8888  # no bind_all: the step never means to open it

    lab = Step(
        name="labdemo",
        summary="LabDemo for one user (a stand-in step)",
        settings=LabSettings,
        check=lambda ctx: [],
        verify=(),
        services=(("labdemo", "listen_port"),),
    )
    monkeypatch.setattr(rules, "STEPS", (*rules.STEPS, lab))
    data, facts = load(BUDGET)
    wide = dataclasses.replace(data, listeners=(doctor.Listener("0.0.0.0", 8888),))
    f = area(doctor.findings(wide, doctor.Settings(), facts), "LabDemo")
    assert (f.status, f.reason.split(":")[0]) == (
        "warn",
        "port 8888 is open on 0.0.0.0 (every address)",
    )
    assert f.fix == "bind labdemo to 127.0.0.1 and reach it with provision tunnel"
    moved = doctor.findings(
        wide, doctor.Settings(), facts, host_settings={"labdemo": LabSettings(listen_port=9999)}
    )
    assert area(moved, "LabDemo").reason == "nothing listens on port 9999"
    assert area(moved, "TensorBoard").reason == "nothing listens on port 6006"
