"""provision status: the notebook services (the jupyter step's lab or hub unit) and the hub's
running per-user servers (jupyterhub-systemdspawner's `jupyter-USER-singleuser.service`).

The samples are written by hand in the form `systemctl show -p ...` prints (systemd 252 and
later): one KEY=value line per property in systemd's own order (the Service interface's, then
the Unit's), a blank line between units, `[not set]` for a counter nobody accounts, `infinity`
for no limit, and, for a unit that does not exist, LoadState=not-found with the defaults.
The script itself is run here under sh: once as it is (systemd is not PID 1 on this machine),
once with a stand-in systemctl on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from provision import status
from provision.status.read import parse_notebooks

GiB = 1024**3

NOT_FOUND = """MainPID=0
MemoryCurrent=[not set]
CPUUsageNSec=[not set]
MemoryMax=infinity
User=
Id={unit}
LoadState=not-found
ActiveState=inactive
ActiveEnterTimestampMonotonic=0
"""

LAB_ACTIVE = """MainPID=2211
MemoryCurrent=402653184
CPUUsageNSec=95000000000
MemoryMax=infinity
User=alice
Id=provision-jupyter.service
LoadState=loaded
ActiveState=active
ActiveEnterTimestampMonotonic=6000000000
"""

HUB_ACTIVE = """MainPID=1893
MemoryCurrent=157286400
CPUUsageNSec=41000000000
MemoryMax=infinity
User=root
Id=provision-jupyterhub.service
LoadState=loaded
ActiveState=active
ActiveEnterTimestampMonotonic=5000000000
"""

ALICE = """MainPID=41233
MemoryCurrent=1288490188
CPUUsageNSec=183000000000
MemoryMax=4294967296
User=alice
Id=jupyter-alice-singleuser.service
LoadState=loaded
ActiveState=active
ActiveEnterTimestampMonotonic=2500000000
"""

BOB = """MainPID=41877
MemoryCurrent=536870912
CPUUsageNSec=12000000000
MemoryMax=infinity
User=bob
Id=jupyter-bob-singleuser.service
LoadState=loaded
ActiveState=active
ActiveEnterTimestampMonotonic=9700000000
"""


def host_output(*blocks: str, ages: str = "", uptime: str = "10000.00 39000.00") -> str:
    """The status script's output with this @@notebooks section (and nothing from a GPU)."""
    shown = "\n".join(blocks)
    return (
        f"@@loadavg\n0.10 0.20 0.30 1/300 4242\n@@uptime\n{uptime}\n@@smi-exit\n127\n"
        f"@@notebooks\n{shown}\n@@notebook-ages\n{ages}"
    )


def parsed(*blocks: str, ages: str = "") -> status.HostStatus:
    return status.parse("box", host_output(*blocks, ages=ages))


def notebook_lines(text: str) -> list[str]:
    """The rendered NOTEBOOKS table (its header and rows), [] when there is none."""
    lines = text.splitlines()
    if not any(line.startswith("HOST") and "NOTEBOOKS" in line for line in lines):
        return []
    start = next(i for i, line in enumerate(lines) if "NOTEBOOKS" in line)
    return lines[start:]


def test_no_notebook_units_no_block():
    st = parsed(
        NOT_FOUND.format(unit="provision-jupyter.service"),
        NOT_FOUND.format(unit="provision-jupyterhub.service"),
    )
    assert st.notebook_services == [] and st.notebook_servers == []
    text = status.render([st])
    assert "NOTEBOOKS" not in text and "jupyter" not in text


def test_a_box_without_systemd_has_an_empty_section_and_no_block():
    st = status.parse("box", "@@smi-exit\n127\n@@notebooks\n\n")
    assert st.notebook_services == [] and st.notebook_servers == []
    assert "NOTEBOOKS" not in status.render([st])


def test_lab_mode_active_names_its_user():
    st = parsed(LAB_ACTIVE, NOT_FOUND.format(unit="provision-jupyterhub.service"))
    (lab,) = st.notebook_services
    assert (lab.unit, lab.kind, lab.state, lab.user) == (
        "provision-jupyter.service",
        "jupyterlab",
        "active",
        "alice",
    )
    assert st.notebook_servers == []
    assert notebook_lines(status.render([st])) == [
        "HOST  NOTEBOOKS",
        "box   jupyterlab (alice) active",
    ]


def test_hub_active_with_two_user_servers():
    # alice's age from ps (etimes of her MainPID); bob's, with no ps line, from the monotonic
    # start against /proc/uptime: 10000 s - 9700 s.
    st = parsed(
        NOT_FOUND.format(unit="provision-jupyter.service"),
        HUB_ACTIVE,
        BOB,
        ALICE,
        ages="41233  7500\n",
    )
    (hub,) = st.notebook_services
    assert (hub.kind, hub.state) == ("jupyterhub", "active")
    alice, bob = st.notebook_servers  # by name
    assert (alice.user, alice.memory_bytes, alice.memory_max_bytes) == (
        "alice",
        1288490188,
        4 * GiB,
    )
    assert alice.cpu_s == 183.0 and alice.up_s == 7500.0
    assert (bob.user, bob.memory_bytes, bob.memory_max_bytes) == ("bob", 512 * 1024**2, None)
    assert bob.cpu_s == 12.0 and bob.up_s == 300.0
    assert notebook_lines(status.render([st])) == [
        "HOST  NOTEBOOKS",
        "box   jupyterhub active; 2 user servers: alice (1.2G of 4.0G, CPU 3m, up 2h 5m), "
        "bob (512M, CPU 12s, up 5m)",
    ]


def test_hub_without_servers_says_so_and_a_failed_hub_shows_its_state():
    st = parsed(HUB_ACTIVE)
    assert notebook_lines(status.render([st]))[1] == "box   jupyterhub active; no user servers"
    failed = parsed(HUB_ACTIVE.replace("ActiveState=active", "ActiveState=failed"), ALICE)
    text = notebook_lines(status.render([failed]))[1]
    assert text.startswith("box   jupyterhub failed; 1 user server: alice (")


def test_after_a_switch_to_hub_the_lab_unit_left_inactive_is_listed_after_the_hub():
    lab = LAB_ACTIVE.replace("ActiveState=active", "ActiveState=inactive")
    st = parsed(lab, HUB_ACTIVE)
    assert [s.kind for s in st.notebook_services] == ["jupyterhub", "jupyterlab"]
    assert notebook_lines(status.render([st]))[1] == (
        "box   jupyterhub active, jupyterlab (alice) inactive; no user servers"
    )


def test_hostile_user_names_are_never_printed_raw():
    evil = (
        ALICE.replace("User=alice", "User=\x1b]0;pwned\x07\x1b[2J")
        .replace("jupyter-alice-", "jupyter-\x1b[2J-")
        .replace("MainPID=41233", "MainPID=1")
    )
    spaced = BOB.replace("User=bob", "User=bob; rm -rf /").replace("jupyter-bob", "jupyter-b b")
    st = parsed(HUB_ACTIVE, evil, spaced)
    assert sorted(s.user for s in st.notebook_servers) == ["?", "?"]
    text = status.render([st])
    assert "\x1b" not in text and "\x07" not in text and "pwned" not in text
    assert "rm -rf" not in text and "b b" not in text
    assert "2 user servers: ? (" in text


def test_user_from_the_unit_name_when_user_is_empty_and_unknown_units_dropped():
    no_user = ALICE.replace("User=alice", "User=")
    stranger = ALICE.replace("jupyter-alice-singleuser", "sshd").replace("User=alice", "User=eve")
    st = parsed(HUB_ACTIVE, no_user, stranger)
    assert [s.user for s in st.notebook_servers] == ["alice"]
    assert "eve" not in status.render([st])


def test_garbage_numbers_are_none_not_errors():
    garbage = (
        BOB.replace("MemoryCurrent=536870912", "MemoryCurrent=12e9")
        .replace("MemoryMax=infinity", "MemoryMax=-5")
        .replace("CPUUsageNSec=12000000000", "CPUUsageNSec=\u0661\u0662")  # Arabic-Indic digits
        .replace("ActiveEnterTimestampMonotonic=9700000000", "ActiveEnterTimestampMonotonic=x")
        .replace("MainPID=41877", "MainPID=99999999999999999999999")
    )
    unset = ALICE.replace("MemoryCurrent=1288490188", "MemoryCurrent=18446744073709551615")
    unset = unset.replace("CPUUsageNSec=183000000000", "CPUUsageNSec=[not set]")
    st = parsed(HUB_ACTIVE, garbage, unset, ages="41233 abc\nnonsense\n")
    alice, bob = st.notebook_servers
    # UINT64_MAX is how systemd before [not set] printed an unaccounted counter
    assert (alice.memory_bytes, alice.memory_max_bytes, alice.cpu_s) == (None, 4 * GiB, None)
    assert alice.up_s == 10000 - 2500  # no usable ps line: the monotonic start
    assert (bob.memory_bytes, bob.memory_max_bytes, bob.cpu_s, bob.up_s) == (
        None,
        None,
        None,
        None,
    )
    assert notebook_lines(status.render([st]))[1] == (
        "box   jupyterhub active; 2 user servers: alice (? of 4.0G, up 2h 5m), bob"
    )


def test_a_stopped_server_and_an_odd_state_are_not_shown_as_running():
    stopping = ALICE.replace("ActiveState=active", "ActiveState=deactivating")
    odd = HUB_ACTIVE.replace("ActiveState=active", "ActiveState=\x1b[31mactive")
    services, servers = parse_notebooks((odd + "\n" + stopping).splitlines(), [])
    assert servers == [] and [s.state for s in services] == ["?"]


def test_json_has_the_notebook_fields():
    st = parsed(HUB_ACTIVE, ALICE, ages="41233 60\n")
    data = json.loads(json.dumps(st.to_json()))
    assert data["notebook_services"] == [
        {
            "unit": "provision-jupyterhub.service",
            "kind": "jupyterhub",
            "state": "active",
            "user": "root",
        }
    ]
    assert data["notebook_servers"] == [
        {
            "user": "alice",
            "memory_bytes": 1288490188,
            "memory_max_bytes": 4 * GiB,
            "cpu_s": 183.0,
            "up_s": 60.0,
        }
    ]
    empty = status.HostStatus("box").to_json()
    assert empty["notebook_services"] == [] and empty["notebook_servers"] == []


def test_an_unreachable_host_has_no_notebook_row():
    text = status.render([status.HostStatus("gone", error="refused")])
    assert "NOTEBOOKS" not in text


# --- the script, for real, under sh ---------------------------------------------------------


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(["sh", "-c", status.SCRIPT], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc


def test_script_section_runs_here_without_systemd_as_pid_1():
    proc = run_script(dict(os.environ))
    assert "\n@@notebooks\n" in proc.stdout
    st = status.parse("here", proc.stdout)
    if Path("/run/systemd/system").is_dir():  # a booted systemd: the units may exist
        assert all(s.unit in status.read.NOTEBOOK_UNITS for s in st.notebook_services)
    else:
        assert st.notebook_services == [] and st.notebook_servers == []


def test_script_section_without_systemctl_on_path(tmp_path):
    # PATH without systemctl (a container): only the header; still exit 0. (Other reads may
    # complain on stderr about the tools left out here; the section is what counts.)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", "df", "timeout", "head", "tr", "ps", "sed", "true"):
        for d in os.environ["PATH"].split(":"):
            if (Path(d) / tool).exists():
                (bin_dir / tool).symlink_to(Path(d) / tool)
                break
    proc = subprocess.run(
        ["/bin/sh", "-c", status.SCRIPT],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "LC_ALL": "C"},
    )
    assert proc.returncode == 0, proc.stderr
    # the notebooks section is only its header; the Slurm section (no sinfo either) follows
    assert proc.stdout.rstrip().endswith("@@notebooks\n@@slurm-nodes")


FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1" in
  list-units)
    echo "jupyter-alice-singleuser.service loaded active running /bin/jupyterhub-singleuser"
    echo "jupyter-bob-singleuser.service   loaded active running /bin/jupyterhub-singleuser"
    echo "jupyter-*-singleuser.service loaded active running a glob, not a unit name"
    ;;
  show) cat "$SHOWN";;
  *) exit 1;;
esac
"""


def test_script_section_with_a_stand_in_systemctl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    calls = tmp_path / "calls"
    shown = tmp_path / "shown"
    # alice's MainPID is this test's own process: ps gives its real age
    alice = ALICE.replace("MainPID=41233", f"MainPID={os.getpid()}")
    shown.write_text(
        "\n".join([NOT_FOUND.format(unit="provision-jupyter.service"), HUB_ACTIVE, alice, BOB])
    )
    env = dict(os.environ)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", CALLS=str(calls), SHOWN=str(shown))
    proc = run_script(env)
    st = status.parse("here", proc.stdout)
    assert [s.kind for s in st.notebook_services] == ["jupyterhub"]
    alice_st, bob_st = st.notebook_servers
    assert (alice_st.user, bob_st.user) == ("alice", "bob")
    assert alice_st.up_s is not None and alice_st.up_s < 24 * 3600  # from ps, not boot
    list_call, show_call = calls.read_text().splitlines()
    assert list_call.startswith("list-units --type=service --state=running")
    assert list_call.endswith("jupyter-*-singleuser.service")
    # one show for the two units and the running servers, the glob line not expanded or passed
    words = show_call.split()
    assert words[0] == "show" and "-p" in words
    assert words[-4:] == [
        "provision-jupyter.service",
        "provision-jupyterhub.service",
        "jupyter-alice-singleuser.service",
        "jupyter-bob-singleuser.service",
    ]
