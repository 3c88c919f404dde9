"""Inventory parsing: structure, and an error with file:line for every kind of mistake."""

from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.inventory import parse, parse_ad_hoc

GOOD = """\
# comment
; also a comment
[gpu]
box1 ansible_host=10.0.0.5 ansible_user=ubuntu base.extra_packages="nvtop,ncdu"  # trailing
box2 ansible_host=10.0.0.6

[gpu:vars]
base.apt_cache_max_age_s = 3600

[lab:children]
gpu

[lab:vars]
base.time_sync=false

[all:vars]
base.install_recommends=yes
"""


def test_inventory_parses_groups_vars_and_children():
    inv = parse(GOOD, Path("inv.ini"))
    assert list(inv.hosts) == ["box1", "box2"]
    assert inv.hosts["box1"].vars["base.extra_packages"].text == "nvtop,ncdu"
    assert inv.hosts["box1"].vars["ansible_host"].where == "inv.ini:4"
    assert inv.groups["gpu"].vars["base.apt_cache_max_age_s"].text == "3600"
    assert inv.hosts_in("lab") == ["box1", "box2"]
    assert inv.groups_of("box1") == ["gpu", "lab"]
    assert inv.all_vars["base.install_recommends"].text == "yes"
    assert inv.select(["lab"]) == ["box1", "box2"]
    assert inv.select(["box2", "all"]) == ["box2", "box1"]


def test_inventory_hash_inside_a_value_is_not_a_comment():
    inv = parse("[g]\nh base.apt_mirror=http://m/x#y\n")
    assert inv.hosts["h"].vars["base.apt_mirror"].text == "http://m/x#y"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[g\nh\n", 1, "bad section header"),
        ("[g:weird]\n", 1, "unknown section type"),
        ("[9g]\n", 1, "bad group name"),
        ("[g]\nh ansible_host='unterminated\n", 2, "close the quote"),
        ("[g]\nh novalue\n", 2, "not key=value"),
        ("[g]\n-h x=1\n", 2, "bad host name"),
        ("[g]\nh $(id)=1\n", 2, "not a valid key"),
        ("[g]\nh a=1\nh a=2\n", 3, "sets 'a'"),
        ("[g:vars]\nx=1\nx=2\n", 3, "set twice"),
        ("[g:children]\nnope\n", 1, "unknown group 'nope'"),
        ("[a:children]\nb\n[b:children]\na\n", 1, "contains itself"),
        ("[g]\ng\n", 1, "both a host and a group"),
        ("[all]\nh\n", 1, "only [all:vars]"),
        ("[g:children]\na b\n", 2, "one group name per line"),
    ],
)
def test_inventory_errors_name_file_and_line(text, line, words):
    with pytest.raises(ConfigError) as info:
        parse(text, Path("inventory.ini"))
    assert info.value.message.startswith(f"inventory.ini:{line}: ")
    assert words in info.value.message + info.value.hint
    assert info.value.exit_code == 2


def test_inventory_unknown_host_suggests_a_name():
    inv = parse("[gpu]\nmybox\n", Path("inventory.ini"))
    with pytest.raises(ConfigError) as info:
        inv.select(["mybxo"])
    assert "did you mean 'mybox'" in info.value.hint


def test_ad_hoc_host_forms():
    assert parse_ad_hoc("ubuntu@127.0.0.1:2222") == ("ubuntu", "127.0.0.1", 2222)
    assert parse_ad_hoc("root@box.lan") == ("root", "box.lan", 22)
    assert parse_ad_hoc("me@[::1]:2200") == ("me", "::1", 2200)
    assert parse_ad_hoc("mybox") is None
    assert parse_ad_hoc("a@b;rm -rf /") is None
    with pytest.raises(ConfigError):
        parse_ad_hoc("u@h:70000")


def test_set_host_vars_rewrites_only_the_host_line(tmp_path):
    from provision.inventory import load, set_host_vars

    path = tmp_path / "inventory.ini"
    path.write_text(
        "# lab\n[gpu]\nbox ansible_host=10.0.0.5 base.time_sync=false  # the big one\nother\n"
    )
    where = set_host_vars(path, "box", {"ansible_host": "10.0.0.9", "ansible_port": "2222"})
    assert where == f"{path}:3"
    assert path.read_text() == (
        "# lab\n[gpu]\nbox ansible_host=10.0.0.9 base.time_sync=false ansible_port=2222 # the big one\nother\n"
    )
    inv = load(path)
    assert inv.hosts["box"].vars["ansible_port"].text == "2222"
    assert (tmp_path / "inventory.ini.provision-bak").read_text().startswith("# lab\n")


def test_inventory_bom_is_not_part_of_the_first_line():
    inv = parse("\ufeff[gpu]\nbox ansible_host=10.0.0.5\n", Path("inv.ini"))
    assert inv.hosts_in("gpu") == ["box"]


def test_inventory_vars_for_a_group_that_does_not_exist_is_refused():
    with pytest.raises(ConfigError) as err:
        parse("[gpu]\nbox\n[gpus:vars]\ndriver.branch=535\n", Path("inv.ini"))
    assert err.value.where == "inv.ini:3"
    assert "did you mean [gpu:vars]" in err.value.hint


def test_inventory_vars_for_a_group_defined_later_or_as_a_child_are_fine():
    later = parse("[gpu:vars]\nbase.time_sync=false\n[gpu]\nbox\n", Path("inv.ini"))
    assert later.groups_of("box") == ["gpu"]
    assert later.groups["gpu"].vars["base.time_sync"].text == "false"
    assert later.groups["gpu"].vars["base.time_sync"].where == "inv.ini:2"
    child = parse("[lab:children]\ngpu\n[gpu:vars]\nbase.time_sync=false\n[lab]\nbox\n", Path("i"))
    # gpu is declared only as lab's child: its vars are kept, not refused as a typo
    assert child.groups["gpu"].vars["base.time_sync"].text == "false"
