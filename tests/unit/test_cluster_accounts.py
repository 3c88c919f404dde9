"""Accounts across a cluster: every users.accounts name gets one UID:GID on every box
(provision/group.py account_ids; the users step creates it so), and a box that mounts the
shared homes leaves the home and its keys to the box that holds them.

Expectations from outside the code: Debian's /etc/login.defs (UID_MIN 1000, UID_MAX 60000:
people's accounts), useradd(8)/groupadd(8)'s options (-u, -g, -M: no home made), and the
rule that root is squashed on an NFS home (it cannot write the user's files there).
"""

from pathlib import Path

import pytest
from test_cluster import member_text

import declared
from fakes import FakeRemote
from provision import group
from provision.changes import Upload
from provision.facts import parse_facts
from provision.steps import cluster, users

DATA = Path(__file__).parent.parent / "data" / "facts"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDOzxK7Ms0Hb5Wc0eoF8q2vS2bt2p4yJ9O4wbn6p1Yb alice@laptop"


def member(host, accounts="", groups=""):
    return group.parse_member(host, member_text(host, accounts=accounts, groups=groups))


def test_login_defs_range_is_debians():
    defs = Path("/etc/login.defs")
    if not defs.is_file():
        pytest.skip("no /etc/login.defs here")
    values = dict(
        line.split()[:2] for line in defs.read_text().splitlines() if line.startswith("UID_M")
    )
    assert (int(values["UID_MIN"]), int(values["UID_MAX"])) == (group.FIRST_ID, group.LAST_ID)


def test_new_accounts_get_the_lowest_number_free_on_every_box():
    boxes = [
        member("box1", "alice:1000:1000", "alice:1000"),
        member("box2", "bob:1001:1001", "bob:1001\nlab:1002"),
    ]
    ids, problems = group.account_ids(boxes, ["alice", "carol", "dave", "bob"])
    assert problems == []
    assert ids == {
        "alice": (1000, 1000),  # box1's, kept
        "carol": (1003, 1003),  # 1000-1002 are taken on some box (lab's GID counts)
        "dave": (1004, 1004),
        "bob": (1001, 1001),
    }


def test_a_group_of_the_accounts_name_keeps_its_gid():
    boxes = [member("box1", "", "carol:1500"), member("box2", "", "")]
    ids, problems = group.account_ids(boxes, ["carol"])
    assert (ids, problems) == ({"carol": (1500, 1500)}, [])


def test_a_number_another_box_gives_to_someone_else_is_refused():
    boxes = [
        member("box1", "alice:1000:1000", "alice:1000"),
        member("box2", "bob:1000:1000", "bob:1000"),
    ]
    _ids, problems = group.account_ids(boxes, ["alice"])
    assert any("account alice is UID 1000" in p and "box2 gives UID 1000 to bob" in p
               for p in problems)  # fmt: skip
    assert any("GID 1000 to group bob" in p for p in problems)


def test_the_group_phase_refuses_it_before_any_change():
    boxes = [
        member("box1", "alice:1000:1000", "alice:1000"),
        member("box2", "bob:1000:1000", "bob:1000"),
    ]
    found = group.problems(boxes, "box1", 1000, 60, wanted=["alice"])
    assert any("box2 gives UID 1000 to bob" in p for p in found)


# --- the users step in a cluster run --------------------------------------------------------


def plan(share_server=""):
    """`box` (the box checked: declared.context's name) and box1, box1 the controller."""
    boxes = [member("box1", "", ""), member("box", "", "")]
    settings = {b.host: cluster.Settings(controller="box1", nfs_home=share_server) for b in boxes}
    return group.decide(boxes, settings, "box1", wanted=["alice"])


def users_check(host_plan, remote, **settings):
    s = users.Settings(accounts=("alice",), **settings)
    facts = parse_facts((DATA / "debian-12-nspawn.txt").read_text())
    ctx = declared.context(users.STEP, facts, {"users": s, group.PLAN: host_plan}, remote)
    return users.check(ctx)


def test_an_account_is_created_with_the_clusters_numbers():
    r = FakeRemote().on(r"getent", "group video:x:44:\n")
    changes = users_check(plan(), r)
    assert changes[0].summary == "create user alice (UID 1000, GID 1000, as on every box of the " \
        "cluster)"  # fmt: skip
    commands = [a.command for a in changes[0].actions]
    assert commands == [
        "groupadd -g 1000 -- alice",
        "useradd -m -s /bin/bash -u 1000 -g 1000 -G video -- alice",
    ]


def test_on_a_box_mounting_the_homes_the_home_and_keys_are_the_servers(tmp_path):
    pub = tmp_path / "alice.pub"
    pub.write_text(KEY + "\n")
    r = FakeRemote().on(r"getent", "")
    changes = users_check(plan(share_server="box1"), r, authorized_keys=(str(pub),))
    assert [c.summary for c in changes] == [
        "create user alice (UID 1000, GID 1000, as on every box of the cluster; home on box1's "
        "share)"
    ]
    assert changes[0].actions[-1].command == "useradd -M -s /bin/bash -u 1000 -g 1000 -- alice"
    assert not [a for c in changes for a in c.actions if isinstance(a, Upload)]


def test_the_server_itself_makes_the_home_and_writes_the_keys(tmp_path):
    pub = tmp_path / "alice.pub"
    pub.write_text(KEY + "\n")
    r = FakeRemote().on(r"getent", "")
    host_plan = plan(share_server="box")  # the checked box shares the homes
    host_plan = group.dataclasses.replace(host_plan, controller="box")
    changes = users_check(host_plan, r, authorized_keys=(str(pub),))
    assert changes[0].actions[-1].command.startswith("useradd -m ")
    assert [a.dest for c in changes for a in c.actions if isinstance(a, Upload)] == [
        "/home/alice/.ssh/authorized_keys"
    ]


def test_without_a_cluster_run_useradd_picks_the_numbers():
    r = FakeRemote().on(r"getent", "")
    s = users.Settings(accounts=("alice",))
    facts = parse_facts((DATA / "debian-12-nspawn.txt").read_text())
    changes = users.check(declared.context(users.STEP, facts, {"users": s}, r))
    assert [a.command for a in changes[0].actions] == ["useradd -m -s /bin/bash -- alice"]


# --- which refusals a run without the cluster step makes ------------------------------------


class Lines:
    def step_line(self, *args):
        pass


def read_lab(tmp_path, monkeypatch, texts, cluster_step):
    """runner.read_cluster over INVENTORY's three boxes, each read answered from `texts`."""
    from test_cluster import INVENTORY, load

    from provision import runner

    (hc,) = load(INVENTORY + "users.accounts = alice\n", ["box1"], tmp_path)
    monkeypatch.setattr(
        runner, "read_member", lambda m, *_a: group.parse_member(m.name, texts[m.name])
    )
    monkeypatch.setattr(group, "now", lambda: 1000)
    return runner.read_cluster(hc, Lines(), tmp_path, None, cluster_step)


def test_users_alone_is_not_refused_for_a_slurm_mix_but_for_numbers(tmp_path, monkeypatch):
    from provision.errors import ProvisionError

    texts = {
        "box1": member_text("box1", accounts="", groups=""),
        "box2": member_text("box2", accounts="", groups="", os="debian-13"),
        "box3": member_text("box3", accounts="", groups=""),
    }
    with pytest.raises(ProvisionError, match="newer than the controller"):
        read_lab(tmp_path, monkeypatch, texts, cluster_step=True)
    decided = read_lab(tmp_path, monkeypatch, texts, cluster_step=False)
    assert decided.accounts == {"alice": (1000, 1000)}
    texts["box3"] = member_text("box3", accounts="alice:1000:1000\nbob:1001:1001",
                                groups="alice:1000")  # fmt: skip
    texts["box2"] = member_text("box2", accounts="bob:1000:1000", groups="", os="debian-13")
    with pytest.raises(ProvisionError, match="account bob has different UID:GID"):
        read_lab(tmp_path, monkeypatch, texts, cluster_step=False)
