"""containers.engine = podman: the plan for rootful and rootless Podman.

Expectations come from the manuals: subuid(5)/subgid(5) (`name:first:count` lines),
usermod(8) (`--add-subuids FIRST-LAST`), login.defs(5) (SUB_UID_MIN 100000, SUB_UID_COUNT
65536), loginctl(1) (enable-linger: /var/lib/systemd/linger/NAME), podman(1) rootless mode
(newuidmap from `uidmap`; slirp4netns as Podman 4's network helper, pasta from `passt` as
Podman 5's), and Debian's podman versions (bookworm 4.3.1, trixie 5.4.2).
"""

import dataclasses
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision.facts import parse_facts
from provision.step import Context
from provision.steps import base, containers, users
from provision.steps import containers_podman as podman

DATA = Path(__file__).parent.parent / "data" / "facts"
SUBUID = "bob:100000:65536\n"


def answers(subuid=SUBUID, subgid=SUBUID, linger=False, root_image=False, user_image=False):
    r = FakeRemote()
    r.on(r"echo @@subuid", f"@@subuid\n{subuid}@@subgid\n{subgid}")
    r.on(r"/var/lib/systemd/linger/", "" if linger else (1, ""))
    r.on(r"'podman image exists", "" if root_image else (1, ""))
    r.on(r"runuser -u .* podman image exists", "" if user_image else (125, ""))
    return r


def plan(r, facts_file="debian-12-nspawn.txt", **kwargs):
    f = dataclasses.replace(parse_facts((DATA / facts_file).read_text()), user="t")
    s = containers.Settings(enabled=True, engine="podman", **kwargs)
    settings = {"containers": s, "users": users.Settings(), "base": base.Settings()}
    ctx = Context("box", f, settings, gathered={}, strict=True)
    ctx = dataclasses.replace(ctx, gathered=r.read_all(containers.STEP.reads(ctx), f.user))
    return containers.check(ctx)


def commands(changes):
    return [a.command for c in changes for a in c.actions if hasattr(a, "command")]


def test_rootful_podman_is_the_package_and_the_image_no_daemon():
    changes = plan(answers())
    assert [c.summary for c in changes] == [
        "install 1 package: podman",
        "make the local check image provision-check:dash for root (podman import; no registry)",
    ]
    assert "podman import -c" in commands(changes)[-1]
    assert not any("docker" in c.summary or "daemon.json" in c.summary for c in changes)


def test_a_rootless_account_gets_ids_after_the_highest_range_lingering_and_its_image():
    changes = plan(answers(), podman_users=("alice",))
    summaries = [c.summary for c in changes]
    assert summaries[0] == "install 4 packages: podman, uidmap, dbus-user-session, slirp4netns"
    ran = commands(changes)
    # bob holds 100000-165535: alice's range starts after it
    assert "usermod --add-subuids 165536-231071 --add-subgids 165536-231071 -- alice" in ran
    assert "loginctl enable-linger -- alice" in ran
    as_alice = [c for c in ran if "runuser -u alice" in c]
    migrate, image = as_alice
    assert migrate.endswith("podman system migrate") and "podman import" in image
    assert "XDG_RUNTIME_DIR=/run/user/$(id -u alice)" in image
    # the order: the session, then the IDs (and their migrate, in the session), then the image
    linger = ran.index("loginctl enable-linger -- alice")
    assert linger < ran.index(migrate) < ran.index(image)


def test_two_accounts_get_ranges_that_do_not_overlap_and_the_first_starts_at_sub_uid_min():
    ran = commands(plan(answers(subuid="", subgid=""), podman_users=("alice", "carol")))
    assert "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 -- alice" in ran
    assert "usermod --add-subuids 165536-231071 --add-subgids 165536-231071 -- carol" in ran


def test_an_account_with_its_ranges_linger_and_image_plans_nothing():
    r = answers(subuid="alice:231072:65536\n", subgid="alice:231072:65536\n", linger=True,
                root_image=True, user_image=True)  # fmt: skip
    assert plan(r, podman_users=("alice",))[1:] == []  # the packages are not in these facts


def test_only_the_missing_file_gets_a_range():
    r = answers(subuid="alice:100000:65536\n", subgid="")
    ran = commands(plan(r, podman_users=("alice",)))
    assert "usermod --add-subgids 100000-165535 -- alice" in ran


@pytest.mark.parametrize(
    "os_key, helper",
    [("debian-12", "slirp4netns"), ("debian-13", "passt"), ("ubuntu-24.04", "passt")],
)
def test_the_network_helper_follows_the_releases_podman(os_key, helper):
    assert podman.packages_for(os_key, ("alice",))[-1] == helper
    assert podman.packages_for(os_key, ()) == ("podman",)


def test_subid_files_are_parsed_as_subuid_5_writes_them():
    text = (
        "@@subuid\nalice:100000:65536\nbad line\nbob:165536:65536\n@@subgid\nalice:100000:65536\n"
    )
    parsed = podman.parse_subids(text)
    assert parsed["subuid"] == {"alice": (100000, 65536), "bob": (165536, 65536)}
    assert parsed["subgid"] == {"alice": (100000, 65536)}
    assert podman.next_start(parsed["subuid"]) == 231072
