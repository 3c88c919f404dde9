"""provision status: the parsers and the table on recorded outputs of the status script
(tests/data/status/), the script itself run here under sh with a stand-in nvidia-smi, and
the polling (one connection and one command per host, errors in their row)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from fakes import FakeRemote
from provision import status
from provision.changes import Result
from provision.cli import cli
from provision.errors import ConnectError
from provision.remote import Connection

DATA = Path(__file__).resolve().parents[1] / "data" / "status"


def recorded(name: str) -> status.HostStatus:
    return status.parse(name, (DATA / f"{name}.txt").read_text())


def test_busy_box_two_gpus_with_processes_of_two_users():
    st = recorded("busy-2gpu")
    assert [g.index for g in st.gpus] == [0, 1]
    g0 = st.gpus[0]
    assert g0.name == "NVIDIA GeForce RTX 3090"
    assert (g0.utilization_pct, g0.memory_used_mib, g0.memory_total_mib) == (98, 23158, 24576)
    assert (g0.temperature_c, g0.power_draw_w, g0.power_limit_w) == (74, 341.27, 350.0)
    assert [(p.gpu_index, p.user, p.command, p.pid, p.memory_mib) for p in st.processes] == [
        (0, "alice", "python", 412233, 22890),
        (1, "bob", "python3", 413870, 9120),
        (1, "bob", "pt_main_thread", 415002, 9010),
    ]
    assert st.gpu_reason == ""
    assert st.load == (7.84, 7.12, 6.95)
    assert st.uptime_s == pytest.approx(1049621.37)
    assert st.reboot_required
    assert st.reboot_reasons == ["linux-image-6.5.0-35-generic", "linux-base"]  # deduplicated
    # Real filesystems only: not tmpfs, /boot/efi (vfat) or snaps (squashfs); / first.
    assert [(d.mount, d.fs_type) for d in st.disks] == [("/", "ext4"), ("/data", "ext4")]
    assert st.disks[1].free_bytes == 738122216 * 1024
    assert st.disks[0].used_pct == pytest.approx(90.9, abs=0.1)


def test_idle_box_na_power_and_no_processes():
    st = recorded("idle")
    (gpu,) = st.gpus
    assert gpu.power_draw_w is None  # "[N/A]" with nounits
    assert gpu.power_limit_w == 450.0 and gpu.utilization_pct == 0
    assert st.processes == [] and not st.reboot_required
    assert "N/A/450W" in status.render([st])


def test_driver_library_mismatch_says_reboot_with_both_versions():
    st = recorded("mismatch")
    assert st.gpus == []
    assert st.gpu_reason == (
        "driver/library version mismatch (module 535.161.07, library 535.183): reboot needed"
    )
    assert st.reboot_required
    assert st.reboot_reasons[-1] == "NVIDIA driver/library mismatch"
    assert [(d.mount, d.fs_type) for d in st.disks] == [("/", "ext4"), ("/data", "xfs")]


def test_mismatch_with_the_open_kernel_module_line():
    module = (
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Thu Mar 20 18:54:18 UTC 2025"
    )
    smi = ["Failed to initialize NVML: Driver/library version mismatch"]
    reason = status.gpu_reason(18, smi, ["0000:01:00.0 0x030000"], module)
    assert reason == "driver/library version mismatch (module 570.133.20): reboot needed"


def test_box_without_gpu():
    st = recorded("nogpu")
    assert st.gpus == [] and st.gpu_reason == "no NVIDIA GPU"
    assert not st.reboot_required


def test_gpu_present_but_driver_not_loaded():
    assert recorded("driver-not-loaded").gpu_reason == "driver not loaded: reboot needed?"


def test_gpu_present_but_no_driver_installed():
    assert recorded("no-driver").gpu_reason.startswith("NVIDIA GPU found but no driver installed")


@pytest.mark.parametrize(
    ("exit_code", "lines", "pci", "expected"),
    [
        (127, [], [], "no NVIDIA GPU"),
        # nvidia-smi installed (say, from an image) on a box whose only GPU is not NVIDIA's
        (6, ["No devices were found"], [], "no NVIDIA GPU"),
        (9, ["NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
         [], "no NVIDIA GPU"),
        (6, ["No devices were found"], ["0000:01:00.0 0x030000"],
         "no GPU visible to the driver (nvidia-smi: No devices were found)"),
        (15, ["Unable to determine the device handle for GPU0000:01:00.0: GPU is lost."],
         ["0000:01:00.0 0x030000"],
         "nvidia-smi failed: Unable to determine the device handle for GPU0000:01:00.0: "
         "GPU is lost."),
        (124, [], ["0000:01:00.0 0x030000"], "nvidia-smi failed: no answer within 20s (GPU hung?)"),
        # the GPU's HDMI audio function alone is not a GPU
        (127, [], ["0000:01:00.1 0x040300"], "no NVIDIA GPU"),
    ],
)  # fmt: skip
def test_gpu_reasons(exit_code, lines, pci, expected):
    assert status.gpu_reason(exit_code, lines, pci, "") == expected


def test_not_supported_and_na_values_are_none():
    line = "0, NVIDIA GeForce GTX 770, [Not Supported], 1020, 2047, 52, [Not Supported], N/A, GPU-1"
    (gpu,) = status.parse_gpus([line, "", "WARNING: infoROM is corrupted at gpu 0000:01:00.0"])
    assert gpu.utilization_pct is None and gpu.power_draw_w is None and gpu.power_limit_w is None
    assert (gpu.memory_used_mib, gpu.temperature_c, gpu.uuid) == (1020, 52, "GPU-1")


def test_a_short_gpu_line_is_an_error_not_a_wrong_table():
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        status.parse_gpus(["0, NVIDIA A100, 3"])


def test_process_of_another_pid_namespace_has_unknown_user():
    gpus = recorded("busy-2gpu").gpus
    apps = [f"{gpus[0].uuid}, 777, 1024", "GPU-unknown, 778, [N/A]"]
    procs = status.parse_processes(apps, ["777 "], gpus)
    assert [(p.gpu_index, p.user, p.command, p.memory_mib) for p in procs] == [
        (0, "?", "?", 1024),
        (None, "?", "?", None),
    ]


def test_df_mount_with_a_space():
    lines = [
        "Filesystem Type 1024-blocks Used Available Capacity Mounted on",
        "/dev/sdc1  ext4       1000  400       600      40% /mnt/scratch disk",
        "server:/export nfs4   2000 1000      1000      50% /data/shared",
    ]
    assert [d.mount for d in status.parse_disks(lines)] == ["/data/shared", "/mnt/scratch disk"]


def test_render_busy_idle_mismatch_nogpu_and_an_unreachable_host():
    names = ["busy-2gpu", "idle", "mismatch", "nogpu"]
    statuses = [recorded(n) for n in names]
    statuses.append(status.HostStatus("gone", error="cannot connect to 10.0.0.9:22: timed out"))
    assert status.render(statuses) == (DATA / "render.txt").read_text()


def test_json_is_serialisable_and_says_reachable():
    st = recorded("busy-2gpu")
    data = json.loads(json.dumps(st.to_json()))
    assert data["reachable"] and data["gpus"][1]["memory_used_mib"] == 18420
    assert data["processes"][0]["user"] == "alice" and data["disks"][0]["used_pct"] == 90.9
    gone = status.HostStatus("gone", error="refused").to_json()
    assert gone["reachable"] is False and gone["error"] == "refused"


@pytest.mark.parametrize(
    ("seconds", "text"), [(59, "0m"), (3725.9, "1h 2m"), (1049621, "12d 3h"), (None, "-")]
)
def test_duration(seconds, text):
    assert status.duration(seconds) == text


def test_size():
    assert [status.size(n) for n in (512, 5 * 1024**2, 83 * 1024**3, 3.6 * 1024**4)] == [
        "512B",
        "5.0M",
        "83G",
        "3.6T",
    ]


# --- the PCI and module reads shared with the host facts (provision.facts.gpu) -------------

FACTS = DATA.parent / "facts"  # real hosts' facts output: PCI_SCRIPT's lines, /proc's version


def facts_section(recording: str, name: str) -> list[str]:
    """One @@section of a recorded facts output, as its lines."""
    text = (FACTS / f"{recording}.txt").read_text()
    lines = []
    for line in text.split(f"\n@@{name}\n", 1)[1].splitlines():
        if line.startswith("@@"):
            break
        lines.append(line)
    return lines


def with_facts_reads(recording: str, smi_exit: int, smi: str) -> status.HostStatus:
    pci = "\n".join(facts_section(recording, "pci"))
    module = facts_section(recording, "nvidia")[:1]
    text = f"@@pci\n{pci}\n@@module\n{''.join(module)}\n@@smi\n{smi}\n@@smi-exit\n{smi_exit}\n"
    return status.parse("box", text)


def test_a_gtx_1080_ti_in_the_facts_pci_lines_is_a_gpu_without_a_driver():
    # ubuntu-22.04-gpu: 0000:01:00.0 0x1b06 0x030000 (the card) and .1 0x040300 (its audio)
    st = with_facts_reads("ubuntu-22.04-gpu", 127, "")
    assert st.gpu_reason.startswith("NVIDIA GPU found but no driver installed")
    assert with_facts_reads("debian-12-nspawn", 127, "").gpu_reason == "no NVIDIA GPU"


def test_mismatch_names_the_module_version_of_a_real_proc_version_line():
    # its /proc/driver/nvidia/version: "NVRM version: NVIDIA UNIX x86_64 Kernel Module
    # 550.127.08  Thu Nov 28 2024"
    smi = (
        "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.135"
    )
    st = with_facts_reads("ubuntu-22.04-gpu", 18, smi)
    assert st.gpu_reason == (
        "driver/library version mismatch (module 550.127.08, library 550.135): reboot needed"
    )


def test_the_hdmi_audio_function_alone_is_no_gpu_in_either_line_format():
    assert not status.has_gpu(["0000:01:00.1 0x10ef 0x040300", "0000:01:00.1 0x040300"])
    assert status.has_gpu(["0000:01:00.0 0x1b06 0x030000"])
    assert status.has_gpu(["0000:65:00.0 0x030200"])  # a 3D controller (A100), older format


# --- the script, for real, under sh ---------------------------------------------------------

FAKE_SMI = """#!/bin/sh
case "$*" in
  *--query-gpu=*) echo "0, NVIDIA GeForce RTX 3090, 98, 23158, 24576, 74, 341.27, 350.00, GPU-a";;
  *--query-compute-apps=*) echo "GPU-a, $OWN_PID, 22890";;
  *) exit 2;;
esac
"""


def run_script(tmp_path, smi: str | None) -> status.HostStatus:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = dict(os.environ)
    if smi is not None:
        (bin_dir / "nvidia-smi").write_text(smi)
        (bin_dir / "nvidia-smi").chmod(0o755)
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    else:
        env["PATH"] = ":".join(
            p for p in env["PATH"].split(":") if not (Path(p) / "nvidia-smi").exists()
        )
    env["OWN_PID"] = str(os.getpid())
    proc = subprocess.run(["sh", "-c", status.SCRIPT], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return status.parse("here", proc.stdout)


def test_script_runs_under_sh_and_finds_owners_with_ps(tmp_path):
    st = run_script(tmp_path, FAKE_SMI)
    assert st.gpus[0].name == "NVIDIA GeForce RTX 3090"
    (proc,) = st.processes
    assert proc.pid == os.getpid() and proc.gpu_index == 0
    assert proc.user == subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert proc.command.startswith("python")
    assert st.load is not None and st.uptime_s > 0
    assert st.disks and st.disks[0].size_bytes > 0


def test_script_without_nvidia_smi_gives_a_reason(tmp_path):
    st = run_script(tmp_path, None)
    assert st.gpus == [] and st.gpu_reason  # "no NVIDIA GPU" here; a driver hint on a GPU box


# --- gathering ------------------------------------------------------------------------------


def test_gather_is_one_unprivileged_command():
    remote = FakeRemote([(r"@@loadavg", (DATA / "nogpu.txt").read_text())])
    remote.is_root = False
    st = status.gather("box", remote)
    assert st.gpu_reason == "no NVIDIA GPU"
    assert len(remote.ran) == 1 and not remote.ran[0].startswith("sudo")


def test_gather_reports_a_failed_script_and_garbage_as_errors():
    failed = FakeRemote([(r"@@loadavg", Result(2, "", "sh: 1: Syntax error\n"))])
    assert status.gather("box", failed).error == "status script exited 2: sh: 1: Syntax error"
    garbage = "@@smi\n0, A100\n@@smi-exit\n0\n"
    assert (
        "unexpected status output"
        in status.gather("box", FakeRemote([(r"@@loadavg", garbage)])).error
    )


class HC:
    def __init__(self, name):
        self.name = name
        self.connection = Connection(host=name, addr="192.0.2.1")


def test_poller_keeps_connections_and_shows_unreachable_hosts():
    connects = []
    remotes = {}

    def connect(conn):
        connects.append(conn.host)
        if conn.host == "down":
            raise ConnectError(f"{conn.host}: cannot connect to 192.0.2.1:22: timed out")
        remotes[conn.host] = FakeRemote([(r"@@loadavg", (DATA / "idle.txt").read_text())])
        return remotes[conn.host]

    poller = status.Poller([HC("up"), HC("down")], connect=connect)
    try:
        first = poller.refresh()
        second = poller.refresh()
    finally:
        poller.close()
    assert [s.host for s in first] == ["up", "down"]
    assert first[0].gpus and second[0].gpus
    assert first[1].error == "cannot connect to 192.0.2.1:22: timed out"  # no "down: " twice
    assert connects == ["up", "down", "down"]  # "up" connected once, "down" retried
    assert len(remotes["up"].ran) == 2  # one command per refresh


def test_poller_reconnects_after_a_lost_connection():
    class Flaky(FakeRemote):
        def _exec(self, command, timeout_s, stdin):
            raise ConnectError("box: connection lost: EOF")

    made = []

    def connect(conn):
        made.append(Flaky() if not made else FakeRemote([(r"@@", "@@smi-exit\n127\n")]))
        return made[-1]

    poller = status.Poller([HC("box")], connect=connect)
    try:
        assert poller.refresh()[0].error == "connection lost: EOF"
        assert poller.refresh()[0].gpu_reason == "no NVIDIA GPU"
    finally:
        poller.close()
    assert len(made) == 2


# --- the command ----------------------------------------------------------------------------


class FakePoller:
    instances: ClassVar[list] = []

    def __init__(self, configs, parallel):
        self.names = [c.name for c in configs]
        self.refreshes = 0
        self.closed = False
        FakePoller.instances.append(self)

    def refresh(self):
        self.refreshes += 1
        out = [recorded("busy-2gpu")]
        out[0].host = self.names[0]
        return out + [status.HostStatus(n, error="refused") for n in self.names[1:]]

    def close(self):
        self.closed = True


def invoke(tmp_path, monkeypatch, args, sleep=None):
    FakePoller.instances = []
    monkeypatch.setattr(status, "Poller", FakePoller)
    if sleep:
        monkeypatch.setattr("time.sleep", sleep)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[lab]\nbox1 ansible_host=192.0.2.1\nbox2 ansible_host=192.0.2.2\n")
    return CliRunner().invoke(cli, ["status", "-i", str(inventory), *args])


def test_status_command_table_and_exit_code(tmp_path, monkeypatch):
    ok = invoke(tmp_path, monkeypatch, ["--host", "box1"])
    assert ok.exit_code == 0, ok.output
    assert "alice:python(412233)" in ok.output and FakePoller.instances[0].closed
    both = invoke(tmp_path, monkeypatch, ["--host", "lab"])
    assert both.exit_code == 1 and "box2  error: refused" in both.output


def test_status_json(tmp_path, monkeypatch):
    result = invoke(tmp_path, monkeypatch, ["--host", "lab", "--json"])
    data = json.loads(result.output)
    assert list(data) == ["box1", "box2"] and data["box2"]["reachable"] is False


@pytest.mark.parametrize(("flag", "seconds"), [(["--watch"], 2.0), (["--watch", "7"], 7.0)])
def test_watch_refreshes_until_ctrl_c_and_exits_0(tmp_path, monkeypatch, flag, seconds):
    slept = []

    def sleep(s):
        slept.append(s)
        if len(slept) == 2:
            raise KeyboardInterrupt

    result = invoke(tmp_path, monkeypatch, ["--host", "lab", *flag], sleep=sleep)
    assert result.exit_code == 0, result.output  # Ctrl-C, even with an unreachable host
    poller = FakePoller.instances[0]
    assert poller.refreshes == 2 and poller.closed  # the same poller: connections kept
    assert slept == [seconds, seconds]
