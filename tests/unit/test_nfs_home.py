"""The cluster's shared homes (cluster.nfs_home: provision/nfshome.py, the cluster step).

Expectations from outside the code: systemd's own tools on this machine (`systemd-escape
--path` names the units, `systemd-analyze verify` reads the rendered units), exports(5)'s line
format and options (`rw,sync,no_subtree_check`, root squashing kept), and the issue's rule
that exports are limited to the cluster's addresses. NFS itself needs a kernel server: two
VMs share a home in tests/vm/test_cluster_nfs_on_vm.py (slow, by hand).
"""

import shutil
import subprocess

import pytest
from test_cluster import INVENTORY, load, member_text, node_remote

from declared import check_declared, recorded
from provision import group, nfshome
from provision.changes import Guarded, Run, Upload
from provision.errors import ConfigError
from provision.steps import base, cluster
from provision.templates import render

TEMPLATE_EXAMPLES = {
    "cluster/exports.j2": {
        "path": "/home",
        "line": "/home 192.0.2.12(rw,sync,no_subtree_check,root_squash)",
    },
    "cluster/share.mount.j2": {"path": "/home", "server": "box1", "automount": "home.automount"},
    "cluster/share.automount.j2": {"path": "/home", "server": "box1"},
}
SHARED = INVENTORY + "cluster.nfs_home = box1\n"


@pytest.mark.parametrize("path", ["/home", "/srv/data", "/data/lab.shared/x_1"])
def test_unit_names_are_systemd_escapes(path):
    if not shutil.which("systemd-escape"):
        pytest.skip("systemd-escape is not installed here")
    want = subprocess.run(["systemd-escape", "--path", "--suffix=automount", path],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert nfshome.unit_name(path, "automount") == want


@pytest.mark.parametrize(
    "path", ["/", "/etc", "home", "/home/", "/a-b", "/home/../etc", "/Home", "/.hidden", "/a b"]
)
def test_paths_that_cannot_be_shared_are_refused(path):
    with pytest.raises(ValueError):
        nfshome.shared_path(path)


@pytest.mark.parametrize("path", ["/home", "/srv/data"])
def test_systemd_reads_the_rendered_units(tmp_path, path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed here")
    values = {"path": path, "server": "box1", "automount": nfshome.unit_name(path, "automount")}
    files = []
    for kind in ("mount", "automount"):
        unit = tmp_path / nfshome.unit_name(path, kind)
        unit.write_text(render(f"cluster/share.{kind}.j2", **values).decode())
        files.append(str(unit))
    out = subprocess.run(["systemd-analyze", "verify", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # A unit whose name does not match its Where= is an error systemd reports: the check bites.
    wrong = tmp_path / "other.automount"
    wrong.write_text(render("cluster/share.automount.j2", **values).decode())
    bad = subprocess.run(["systemd-analyze", "verify", str(wrong)], capture_output=True, text=True)
    assert bad.returncode != 0 and "Where" in bad.stderr


# --- the inventory ----------------------------------------------------------------------------


def test_a_share_on_a_box_outside_the_cluster_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'box9' is not a box of this cluster") as exc:
        load(INVENTORY + "cluster.nfs_home = box9\n", ["box2"], tmp_path)
    assert exc.value.where.endswith("inventory.ini:8")


def test_a_share_on_a_box_other_than_the_controller_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="box2 is not the controller box1") as exc:
        load(INVENTORY + "cluster.nfs_home = box2\n", ["box3"], tmp_path)
    assert "cluster.nfs_home = box1" in exc.value.hint


def test_boxes_that_disagree_on_the_share_are_a_config_error(tmp_path):
    text = SHARED.replace("box3 ansible_host=192.0.2.13", "box3 ansible_host=192.0.2.13 "
                          "cluster.nfs_path=/srv/data")  # fmt: skip
    with pytest.raises(ConfigError, match="one cluster, one share") as exc:
        load(text, ["box1"], tmp_path)
    assert exc.value.where.endswith("inventory.ini:4")


def test_a_path_nfs_cannot_share_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load(SHARED + "cluster.nfs_path = /etc\n", ["box1"], tmp_path)
    assert "/etc" in exc.value.message and exc.value.where.endswith("inventory.ini:9")


# --- the step on the server and on a client ----------------------------------------------------


def plan(controller="box", node_addr=""):
    """A plan for the cluster of `box` (declared.context's name: the box checked) and box2,
    the controller sharing /home."""
    members = [
        group.parse_member("box", member_text("box", munge="a" * 64)),
        group.parse_member("box2", member_text("box2", munge="a" * 64)),
    ]
    settings = {
        m.host: cluster.Settings(controller=controller, nfs_home=controller,
                                 node_addr=node_addr if m.host == "box2" else "")
        for m in members
    }  # fmt: skip
    return group.decide(members, settings, controller)


def check(host_plan, remote):
    settings = {
        "cluster": cluster.Settings(controller=host_plan.controller, nfs_home=host_plan.controller),
        "base": base.Settings(),
        group.PLAN: host_plan,
    }
    return check_declared(cluster.STEP, recorded("debian-12-nspawn.txt"), settings, remote)


def server_remote():
    r = node_remote(munge_sum="a" * 64)
    r.on(r"getent ahostsv4 box2", "192.0.2.12 STREAM box2\n192.0.2.12 DGRAM\n")
    return r


def test_the_server_exports_the_path_to_the_other_boxes_only():
    changes = check(plan(), server_remote())
    summaries = [c.summary for c in changes]
    assert summaries[0].startswith("install ") and "nfs-kernel-server" in summaries[0]
    uploads = {a.dest: a for c in changes for a in c.actions if isinstance(a, Upload)}
    exports = uploads[nfshome.EXPORTS].content.decode()
    lines = [ln for ln in exports.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["/home 192.0.2.12(rw,sync,no_subtree_check,root_squash)"]
    export = next(c for c in changes if nfshome.EXPORTS in c.summary)
    assert Run("exportfs -ra") in export.actions
    runs = [a.command for c in changes for a in c.actions if isinstance(a, Run)]
    assert any("install -d -o nobody -g nogroup -m 0755 -- /home/.provision-check" in r
               for r in runs)  # fmt: skip
    assert "start nfs-server" in summaries


def test_a_node_addr_is_exported_as_given():
    changes = check(plan(node_addr="10.9.0.2"), server_remote())
    uploads = {a.dest: a for c in changes for a in c.actions if isinstance(a, Upload)}
    assert "/home 10.9.0.2(rw," in uploads[nfshome.EXPORTS].content.decode()


def test_a_client_that_does_not_resolve_on_the_server_is_refused():
    r = server_remote()
    r.on(r"getent ahostsv4 box2", (2, ""))
    assert check(plan(), r) is None  # refused (preflight: node names must resolve)


def test_a_client_mounts_the_share_guarded_and_says_what_it_covers():
    r = node_remote(munge_sum="a" * 64)
    r.on(r"ls -A -- /home", "3\n")
    changes = check(plan(controller="box2"), r)
    assert "nfs-common" in changes[0].summary
    mount = [c for c in changes if any(isinstance(a, Guarded) for a in c.actions)]
    assert len(mount) == 1
    (guarded,) = mount[0].actions
    assert {u.dest for u in guarded.uploads} == {
        "/etc/systemd/system/home.mount",
        "/etc/systemd/system/home.automount",
    }
    unit = next(u for u in guarded.uploads if u.dest.endswith(".mount")).content.decode()
    assert "What=box2:/home\n" in unit and "Type=nfs4\n" in unit
    assert "findmnt -n -t nfs4 --mountpoint /home" in guarded.activate
    # The undo unmounts lazily (the session's own directory may be in the mount), and only
    # the NFS and autofs layers: a /home partition of the box's own is never unmounted.
    assert "systemctl stop home.mount home.automount" in guarded.restore
    assert guarded.restore.count("umount -l -- /home") == 2
    assert "if findmnt -n -t nfs4,nfs --mountpoint /home >/dev/null; then umount" in guarded.restore
    assert "if findmnt -n -t autofs --mountpoint /home >/dev/null; then umount" in guarded.restore
    assert mount[0].summary == (
        "mount box2:/home on /home (NFS, at first use: home.automount); it covers this box's "
        "own /home (3 entries) (confirmed by a fresh login)"
    )
