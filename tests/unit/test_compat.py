"""compat: the card/OS/request table, as data-driven cases, and the lookups around it."""

import datetime
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from provision import compat
from provision.cli import cli
from provision.compat import (
    Incompatible,
    Request,
    UnknownCard,
    card_table,
    choose,
    gpu_by_id,
    gpu_by_name,
    parse_gpu,
    tables,
)
from provision.errors import ConfigError
from provision.facts import parse_facts

FACTS = Path(__file__).parent.parent / "data" / "facts"
TODAY = datetime.date(2026, 12, 1)  # the date the tables were checked against their sources


@pytest.fixture(autouse=True)
def pinned_today(monkeypatch):
    """Branch end dates are judged on the day the tables were written (not the test's day)."""
    monkeypatch.setattr(compat.versions, "current_date", lambda: TODAY)


def cards(*ids):
    return [gpu_by_id(i) for i in ids]


# (id, cards, os, request, --arch, expected fields of the Choice)
# fmt: off
ACCEPTED = [
    ("gtx1080ti-ubuntu2404", ["1b06"], "ubuntu-24.04", Request(), "",
     dict(driver_branch=580, flavour="proprietary", source="ubuntu", torch_index="cu126",
          torch_max="2.14", cuda="12.6", arch="pascal")),
    ("rtx4090-ubuntu2204", ["2684"], "ubuntu-22.04", Request(), "",
     dict(driver_branch=580, flavour="open", source="ubuntu", torch_index="cu130", torch_max="",
          cuda="13.0", arch="ada")),
    ("rtx5090-default", ["2b85"], "ubuntu-24.04", Request(), "",
     dict(driver_branch=580, flavour="open", torch_index="cu130", cuda="13.0", arch="blackwell")),
    ("rtx5090-branch570", ["2b85"], "ubuntu-24.04", Request(branch=570), "",
     dict(driver_branch=570, flavour="open", source="ubuntu", torch_index="cu128",
          torch_max="2.11", cuda="12.8")),
    ("rtx5090-torch2.7", ["2b85"], "ubuntu-24.04", Request(torch_version="2.7.1"), "",
     dict(torch_index="cu128", torch_version="2.7.1", cuda="12.8")),
    ("v100-default", ["1db4"], "ubuntu-22.04", Request(), "",
     dict(driver_branch=580, flavour="proprietary", torch_index="cu126", torch_max="2.14",
          arch="volta")),
    ("gtx750ti-maxwell", ["1380"], "ubuntu-24.04", Request(), "",
     dict(driver_branch=580, flavour="proprietary", torch_index="cu126", torch_max="2.14",
          arch="maxwell")),
    ("titan-x-maxwell-debian", ["17c2"], "debian-12", Request(), "",
     dict(driver_branch=580, flavour="proprietary", source="nvidia", torch_index="cu126")),
    ("t4-turing-open", ["1eb8"], "ubuntu-22.04", Request(), "",
     dict(flavour="open", torch_index="cu130", arch="turing")),
    ("a100-ampere", ["20b2"], "ubuntu-22.04", Request(), "",
     dict(flavour="open", torch_index="cu130", arch="ampere")),
    ("h100-hopper", ["2330"], "ubuntu-24.04", Request(), "",
     dict(flavour="open", torch_index="cu130", arch="hopper")),
    ("b200", ["2901"], "ubuntu-24.04", Request(), "",
     dict(flavour="open", torch_index="cu130", arch="blackwell")),
    ("rtx-pro-6000", ["2bb1"], "debian-12", Request(), "",
     dict(flavour="open", source="nvidia", driver_branch=580, torch_index="cu130")),
    ("debian12-default", ["2684"], "debian-12", Request(), "",
     dict(source="nvidia", driver_branch=580, flavour="open", torch_index="cu130")),
    ("debian12-source-debian", ["2684"], "debian-12", Request(source="debian"), "",
     dict(source="debian", driver_branch=535, torch_index="cu126", torch_max="2.14",
          cuda="12.6")),
    ("debian12-source-debian-pascal", ["1b06"], "debian-12", Request(source="debian"), "",
     dict(source="debian", driver_branch=535, flavour="proprietary", torch_index="cu126")),
    ("ubuntu-branch535", ["2684"], "ubuntu-24.04", Request(branch=535), "",
     dict(source="ubuntu", driver_branch=535, torch_index="cu126", torch_max="2.14")),
    ("ubuntu-branch595", ["2684"], "ubuntu-24.04", Request(branch=595), "",
     dict(source="ubuntu", driver_branch=595, torch_index="cu132", cuda="13.2")),
    ("ubuntu-branch590-goes-to-nvidia-repo", ["2684"], "ubuntu-24.04", Request(branch=590), "",
     dict(source="nvidia", driver_branch=590, torch_index="cu130")),
    ("ubuntu-source-nvidia", ["2204"], "ubuntu-22.04", Request(source="nvidia"), "",
     dict(source="nvidia", driver_branch=580)),
    ("torch2.7-cu128", ["2684"], "ubuntu-24.04", Request(torch_version="2.7", torch_index="cu128"), "",
     dict(torch_index="cu128", cuda="12.8", torch_max="2.11", torch_version="2.7")),
    ("torch2.14-cu132", ["2684"], "ubuntu-24.04", Request(torch_version="2.14.0", torch_index="cu132"), "",
     dict(torch_index="cu132", cuda="13.2", torch_max="")),
    ("torch2.12-default-index", ["2684"], "ubuntu-24.04", Request(torch_version="2.12"), "",
     dict(torch_index="cu130")),
    ("pascal-cu118", ["1b06"], "ubuntu-24.04", Request(torch_index="cu118"), "",
     dict(torch_index="cu118", cuda="11.8", torch_max="2.7")),
    ("cpu-index", ["2684"], "ubuntu-24.04", Request(torch_index="cpu"), "",
     dict(torch_index="cpu", cuda="", torch_max="", driver_branch=580)),
    ("explicit-toolkit", ["2684"], "ubuntu-24.04", Request(cuda="12.8"), "",
     dict(cuda="12.8", torch_index="cu130")),
    ("proprietary-on-ada", ["2684"], "ubuntu-24.04", Request(flavour="proprietary"), "",
     dict(flavour="proprietary")),
    ("no-gpu", [], "ubuntu-24.04", Request(), "",
     dict(arch="", flavour="open", driver_branch=580, torch_index="cu130", cuda="13.0")),
    ("no-gpu-debian", [], "debian-12", Request(), "",
     dict(arch="", source="nvidia", driver_branch=580, torch_index="cu130")),
    ("no-gpu-arch-pascal", [], "ubuntu-24.04", Request(), "pascal",
     dict(arch="pascal", flavour="proprietary", torch_index="cu126", torch_max="2.14")),
    ("no-gpu-arch-compute", [], "ubuntu-22.04", Request(), "7.0",
     dict(arch="volta", flavour="proprietary", torch_index="cu126")),
    ("no-gpu-arch-blackwell", [], "ubuntu-22.04", Request(), "sm_120",
     dict(arch="blackwell", flavour="open", torch_index="cu130")),
    ("mixed-pascal-ampere", ["2204", "1b06"], "ubuntu-24.04", Request(), "",
     dict(arch="pascal", flavour="proprietary", torch_index="cu126", torch_max="2.14")),
    ("mixed-turing-blackwell", ["1e04", "2b85"], "ubuntu-24.04", Request(), "",
     dict(arch="turing", flavour="open", torch_index="cu130")),
]
# fmt: on


@pytest.mark.parametrize(
    "gpu_ids, os_key, request_, arch, expected",
    [case[1:] for case in ACCEPTED],
    ids=[case[0] for case in ACCEPTED],
)
def test_choose(gpu_ids, os_key, request_, arch, expected):
    choice = choose(cards(*gpu_ids), os_key, request_, arch)
    got = {field: getattr(choice, field) for field in expected}
    assert got == expected
    assert choice.os_key == os_key
    assert [g.device_id for g in choice.gpus] == gpu_ids
    assert choice.reasons and all(isinstance(r, str) and r for r in choice.reasons)


# (id, cards, os, request, --arch, words in the message, words in the hint)
# fmt: off
REFUSED = [
    ("rtx5090-branch535", ["2b85"], "ubuntu-24.04", Request(branch=535), "",
     ["Blackwell", "needs driver >= 570", "535"], ["driver.branch = 580"]),
    ("rtx5090-debian-nonfree", ["2b85"], "debian-12", Request(source="debian"), "",
     ["needs driver >= 570", "Debian 12 non-free ships only 535"], ["driver.source = nvidia"]),
    ("v100-cu130-no-kernels", ["1db4"], "ubuntu-24.04", Request(torch_index="cu130"), "",
     ["cu130 wheels have no kernels for Volta (compute 7.0)", "Turing"],
     ["pytorch.index = cu126", "torch <= 2.14"]),
    ("rtx5090-cu126-no-kernels", ["2b85"], "ubuntu-24.04", Request(torch_index="cu126"), "",
     ["cu126 wheels have no kernels for Blackwell (compute 12.0)"], ["pytorch.index = cu130"]),
    ("pascal-torch2.11-cu128", ["1b06"], "ubuntu-24.04", Request(torch_version="2.11", torch_index="cu128"), "",
     ["cu128 wheels have no kernels for Pascal"], ["pytorch.index = cu126"]),
    ("pascal-branch590", ["1b06"], "ubuntu-24.04", Request(branch=590), "",
     ["driver branch 590 does not support Pascal", "R580 is the last branch"], ["driver.branch = 580"]),
    ("volta-branch595", ["1d81"], "ubuntu-22.04", Request(branch=595), "",
     ["does not support Volta"], ["driver.branch = 580"]),
    ("debian-source-debian-branch580", ["2684"], "debian-12", Request(source="debian", branch=580), "",
     ["Debian 12 non-free ships only driver 535", "580"], ["driver.source = nvidia"]),
    ("ubuntu2004", ["2684"], "ubuntu-20.04", Request(), "",
     ["ubuntu-20.04 is not served"], ["ubuntu-22.04", "ubuntu-24.04", "debian-12"]),
    ("debian11", [], "debian-11", Request(), "",
     ["debian-11 is not served"], ["debian-12"]),
    ("torch2.15-cu126", ["2684"], "ubuntu-24.04", Request(torch_version="2.15.0", torch_index="cu126"), "",
     ["torch 2.15 has no cu126 wheels", "2.6 to 2.14"], ["cu130", "cu132", "cpu"]),
    ("torch2.6-cu130", ["2684"], "ubuntu-24.04", Request(torch_version="2.6", torch_index="cu130"), "",
     ["torch 2.6 has no cu130 wheels"], ["cu118", "cu124", "cu126"]),
    ("cu130-on-535", ["2684"], "ubuntu-24.04", Request(branch=535, torch_index="cu130"), "",
     ["cu130 wheels need driver >= 580; driver.branch = 535 gives at most CUDA 12.2"],
     ["use pytorch.index = cu126 or driver.branch = 580"]),
    ("cu132-on-debian-nonfree", ["2684"], "debian-12", Request(source="debian", torch_index="cu132"), "",
     ["cu132 wheels need driver >= 580", "535"], ["pytorch.index = cu126", "driver.source = nvidia"]),
    ("torch2.15-on-535", ["2684"], "ubuntu-24.04", Request(branch=535, torch_version="2.15"), "",
     ["torch 2.15 has no wheels that driver 535 can run", "580"],
     ["pytorch.version = 2.14 (cu126)", "driver.branch = 580"]),
    ("open-on-pascal", ["1b06"], "ubuntu-24.04", Request(flavour="open"), "",
     ["open kernel modules need Turing or newer", "Pascal"], ["driver.flavour = proprietary"]),
    ("open-on-no-gpu-arch-maxwell", [], "ubuntu-24.04", Request(flavour="open"), "maxwell",
     ["open kernel modules need Turing", "Maxwell"], ["proprietary"]),
    ("proprietary-on-blackwell", ["2b85"], "ubuntu-24.04", Request(flavour="proprietary"), "",
     ["Blackwell", "open kernel modules only"], ["driver.flavour = open"]),
    ("pascal-with-blackwell", ["1b06", "2b85"], "ubuntu-24.04", Request(), "",
     ["Pascal and Blackwell cards cannot share one driver"], ["different machines"]),
    ("ubuntu-archive-lacks-590", ["2684"], "ubuntu-24.04", Request(source="ubuntu", branch=590), "",
     ["Ubuntu 24.04 archive does not ship driver branch 590"], ["driver.source = nvidia"]),
    ("unknown-branch", ["2684"], "ubuntu-22.04", Request(branch=999), "",
     ["does not ship driver branch 999"], ["driver.branch = 580"]),
    ("source-debian-on-ubuntu", ["2684"], "ubuntu-24.04", Request(source="debian"), "",
     ["driver.source = debian is not available on Ubuntu 24.04"], ["ubuntu or nvidia"]),
    ("source-ubuntu-on-debian", ["2684"], "debian-12", Request(source="ubuntu"), "",
     ["driver.source = ubuntu is not available on Debian 12"], ["nvidia or debian"]),
    ("toolkit-13-on-535", ["2684"], "ubuntu-24.04", Request(branch=535, cuda="13.0"), "",
     ["CUDA 13.0 needs driver >= 580; driver.branch = 535 gives at most CUDA 12.2"],
     ["cuda.version = 12.6", "driver.branch = 580"]),
    ("toolkit-13-on-pascal", ["1b06"], "ubuntu-24.04", Request(cuda="13.0"), "",
     ["CUDA 13.0 does not support Pascal", "CUDA 13 dropped"], ["cuda.version = 12.6"]),
    ("toolkit-12.6-on-blackwell", ["2b85"], "ubuntu-24.04", Request(cuda="12.6"), "",
     ["CUDA 12.6 cannot build for Blackwell", ">= 12.8"], ["cuda.version = 13.0"]),
    ("unknown-toolkit", ["2684"], "ubuntu-24.04", Request(cuda="12.7"), "",
     ["unknown CUDA toolkit version '12.7'"], ["12.6", "13.0"]),
    ("unknown-index", ["2684"], "ubuntu-24.04", Request(torch_index="cu999"), "",
     ["unknown wheel index 'cu999'"], ["cu126", "cu130", "cpu"]),
    ("unknown-torch", ["2684"], "ubuntu-24.04", Request(torch_version="1.13.1"), "",
     ["torch 1.13.1 is not in compat's wheel table"], ["2.6 to 2.15"]),
    ("bad-flavour", ["2684"], "ubuntu-24.04", Request(flavour="nouveau"), "",
     ["driver.flavour = nouveau"], ["open or proprietary"]),
    ("unknown-arch", [], "ubuntu-24.04", Request(), "fermi2",
     ["unknown architecture 'fermi2'"], ["pascal", "compute capability"]),
]
# fmt: on


@pytest.mark.parametrize(
    "gpu_ids, os_key, request_, arch, message_words, hint_words",
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_refused(gpu_ids, os_key, request_, arch, message_words, hint_words):
    with pytest.raises(Incompatible) as caught:
        choose(cards(*gpu_ids), os_key, request_, arch)
    error = caught.value
    assert isinstance(error, ConfigError) and error.exit_code == 2
    for word in message_words:
        assert word in error.message
    for word in hint_words:
        assert word in error.hint


def test_explicit_choice_wins_when_possible():
    choice = choose(cards("2684"), "ubuntu-24.04", Request(branch=575, torch_index="cu128"))
    assert (choice.driver_branch, choice.torch_index, choice.cuda) == (575, "cu128", "12.8")
    assert any(r.startswith("driver 575") and r.endswith("as asked") for r in choice.reasons)
    assert any("R575" in w and "short-lived" in w for w in choice.warnings)
    assert "wheel index cu128 as asked" in choice.reasons


def test_reasons_explain_the_decisions():
    no_gpu = choose([], "ubuntu-24.04")
    assert any("no NVIDIA GPU found: choosing for a current card" in r for r in no_gpu.reasons)
    pascal = choose([], "ubuntu-24.04", arch="pascal")
    assert any("no NVIDIA GPU found: choosing for Pascal" in r for r in pascal.reasons)
    mixed = choose(cards("2204", "1b06"), "ubuntu-24.04")
    assert any("choosing for the oldest, Pascal" in r for r in mixed.reasons)
    ubuntu = choose(cards("2684"), "ubuntu-22.04")
    assert any("ubuntu-drivers install --gpgpu nvidia:580-server" in r for r in ubuntu.reasons)
    r535 = choose(cards("2684"), "debian-12", Request(source="debian"))
    assert any("minor-version compatibility" in r for r in r535.reasons)
    assert any("end of life in June 2026" in r for r in r535.reasons)
    debian = choose(cards("2684"), "debian-12")
    assert any("535" in r and "end of life" in r for r in debian.reasons)
    moved = choose(cards("2684"), "ubuntu-24.04", Request(branch=590))
    assert any("does not ship branch 590" in r for r in moved.reasons)


@pytest.mark.parametrize(
    "text, device_id",
    [
        ("1b06", "1b06"),
        ("10de:1b06", "1b06"),
        ("10DE:1B06", "1b06"),
        ("0x1b06", "1b06"),
        (" 2b85 ", "2b85"),
    ],
)
def test_gpu_by_id(text, device_id):
    gpu = gpu_by_id(text)
    assert gpu is not None and gpu.device_id == device_id


@pytest.mark.parametrize("text", ["ffff", "10de:ffff", "1002:1b06", "1b0", "xyz", ""])
def test_gpu_by_id_unknown(text):
    assert gpu_by_id(text) is None


@pytest.mark.parametrize(
    "text, device_id",
    [
        ("GeForce GTX 1080 Ti", "1b06"),
        ("geforce gtx 1080 ti", "1b06"),
        ("GTX 1080 Ti", "1b06"),
        ("NVIDIA GeForce RTX 4090", "2684"),
        ("RTX 4090", "2684"),
        ("rtx 4090 d", "2685"),
        ("Tesla V100 PCIe 32GB", "1db6"),
        ("V100S", "1df6"),
        ("L40S", "26b9"),
        ("Quadro RTX 6000", "1e36"),
        ("RTX 6000 Ada Generation", "26b1"),
        ("RTX PRO 6000 Blackwell Workstation Edition", "2bb1"),
        ("rtx 5090", "2b85"),
    ],
)
def test_gpu_by_name(text, device_id):
    gpu = gpu_by_name(text)
    assert gpu is not None and gpu.device_id == device_id


@pytest.mark.parametrize("text", ["GeForce GTX 480", "RTX", "", "Radeon RX 7900"])
def test_gpu_by_name_unknown_or_ambiguous(text):
    assert gpu_by_name(text) is None


@pytest.mark.parametrize("text", ["GeForce GTX 1080 Ti", "10de:1b06", "1b06"])
def test_parse_gpu(text):
    gpu = parse_gpu(text)
    assert gpu is not None and gpu.name == "GeForce GTX 1080 Ti"


def test_parse_gpu_unknown_with_arch_leaves_the_choice_to_the_architecture():
    assert parse_gpu("10de:ffff", "ampere") is None
    assert parse_gpu("10de:1b06", "ampere").device_id == "1b06"
    with pytest.raises(Incompatible):
        parse_gpu("10de:ffff", "fermi2")
    choice = choose([], "ubuntu-24.04", arch="8.6")
    assert (choice.arch, choice.flavour, choice.torch_index) == ("ampere", "open", "cu130")


@pytest.mark.parametrize("text", ["10de:ffff", "GeForce 8800 GT"])
def test_parse_gpu_unknown(text):
    with pytest.raises(UnknownCard) as caught:
        parse_gpu(text)
    assert "unknown card" in caught.value.message and text in caught.value.message
    assert caught.value.hint == "give --arch (e.g. ampere) or the compute capability (e.g. 8.6)"


def test_gpus_from_facts_recorded_host_with_a_gtx_1080_ti():
    facts = parse_facts((FACTS / "ubuntu-22.04-gpu.txt").read_text())
    known, unknown = compat.gpus_from_facts(facts)
    assert [g.name for g in known] == ["GeForce GTX 1080 Ti"]
    assert unknown == []  # the HDMI audio function is not a GPU


def test_gpus_from_facts_unknown_ids_and_no_gpu():
    class Device:
        def __init__(self, device_id):
            self.device_id = device_id

    class FakeFacts:
        gpus = (Device("2684"), Device("9999"), Device("9999"))

    known, unknown = compat.gpus_from_facts(FakeFacts())
    assert [g.device_id for g in known] == ["2684"]
    assert unknown == ["10de:9999"]
    facts = parse_facts((FACTS / "debian-12-docker.txt").read_text())
    assert compat.gpus_from_facts(facts) == ([], [])


@pytest.mark.parametrize(
    "os_key, distro",
    [
        ("ubuntu-22.04", "ubuntu2204"),
        ("ubuntu-24.04", "ubuntu2404"),
        ("ubuntu-26.04", "ubuntu2604"),
        ("debian-12", "debian12"),
        ("debian-13", "debian13"),
    ],
)
def test_cuda_repo_distro(os_key, distro):
    assert compat.cuda_repo_distro(os_key) == distro


@pytest.mark.parametrize("os_key", ["ubuntu-20.04", "debian-11", "ubuntu-25.10", "fedora-40"])
def test_cuda_repo_distro_refuses_other_releases(os_key):
    with pytest.raises(Incompatible) as caught:
        compat.cuda_repo_distro(os_key)
    assert os_key in caught.value.message and "debian-12" in caught.value.hint


@pytest.mark.parametrize(
    "branch, cuda",
    [
        (535, "12.2"),
        (550, "12.4"),
        (570, "12.8"),
        (575, "12.9"),
        (580, "13.0"),
        (590, "13.1"),
        (595, "13.2"),
        (620, "13.3"),
        (470, ""),
    ],
)
def test_max_cuda_for_branch(branch, cuda):
    assert compat.max_cuda_for_branch(branch) == cuda


@pytest.mark.parametrize(
    "tag, cuda",
    [("cu118", "11.8"), ("cu126", "12.6"), ("cu130", "13.0"), ("cu132", "13.2"), ("cpu", "")],
)
def test_index_cuda(tag, cuda):
    assert compat.index_cuda(tag) == cuda


def test_index_cuda_refuses_nonsense():
    with pytest.raises(Incompatible):
        compat.index_cuda("rocm6.2")


@pytest.mark.parametrize(
    "text, arch",
    [
        ("pascal", "pascal"),
        ("Ampere", "ampere"),
        ("6.1", "pascal"),
        ("8.6", "ampere"),
        ("sm_89", "ada"),
        ("12.0", "blackwell"),
        ("10.3", "blackwell"),
        ("7.5", "turing"),
        ("lovelace", "ada"),
    ],
)
def test_arch_of(text, arch):
    assert compat.arch_of(text) == arch


def test_describe_and_json():
    choice = choose(cards("1b06"), "ubuntu-24.04")
    text = compat.describe(choice)
    assert "GeForce GTX 1080 Ti (10de:1b06): Pascal, compute 6.1, 11 GB" in text
    assert re.search(r"driver: +580, proprietary kernel modules, from the Ubuntu archive", text)
    assert re.search(r"CUDA: +12\.6", text)
    assert "index cu126 (https://download.pytorch.org/whl/cu126), torch <= 2.14" in text
    assert "why:" in text and "  - " in text
    data = compat.to_json(choice)
    assert json.loads(json.dumps(data)) == data
    assert data["driver"] == {"branch": 580, "flavour": "proprietary", "source": "ubuntu"}
    assert data["pytorch"]["index"] == "cu126" and data["pytorch"]["max"] == "2.14"
    assert data["gpus"][0]["device_id"] == "10de:1b06" and data["cuda"] == "12.6"
    assert data["reasons"] == list(choice.reasons)
    no_gpu = compat.describe(choose([], "debian-12"))
    assert (
        "none found; chosen for a current card" in no_gpu and "NVIDIA's CUDA repository" in no_gpu
    )
    cpu = compat.describe(choose([], "debian-12", Request(torch_index="cpu")))
    assert "none (cpu wheels)" in cpu


# The tables themselves: ids well-formed, every fact consistent with the others and sourced.

UNSERVED = {"kepler"}  # refused with the reason, never given a default


def served(card):
    return card[2] not in UNSERVED and card[3] not in tables.ARM_ONLY_COMPUTES


def test_card_table_is_consistent():
    rows = [(card[0], card[1]) for card in compat.CARDS]
    assert len(rows) == len(set(rows))
    assert len({card[1] for card in compat.CARDS}) >= 80  # distinct card models
    for device_id, name, arch, cc, vram in compat.CARDS:
        assert re.fullmatch(r"[0-9a-f]{4}", device_id), device_id
        assert arch in compat.ARCH_ORDER, name
        assert cc in compat.ARCH_COMPUTES[arch], name
        assert 1 <= vram <= 300, name
    assert {card[2] for card in compat.CARDS} == set(compat.ARCH_ORDER)


def test_wheel_tables_are_consistent():
    for release, builds in compat.WHEEL_BUILDS.items():
        assert re.fullmatch(r"\d+\.\d+", release)
        assert tuple(builds) == compat.TORCH_WHEELS[release]
        for tag, build in builds.items():
            assert compat.index_cuda(tag) in compat.CUDA_RELEASES
            assert re.fullmatch(r"\d+\.\d(;\d+\.\d)*(\+PTX)?", build.arch_list), (release, tag)
    for os_key, branches in {**compat.UBUNTU_BRANCHES, **compat.DEBIAN_BRANCHES}.items():
        assert os_key in compat.OS_TABLE
        assert all(compat.max_cuda_for_branch(b) for b in branches)
        assert all(b in compat.BRANCHES for b in branches)
    for repo, branches in tables.NVIDIA_REPO_BRANCHES_BY_REPO.items():
        assert all(b in compat.BRANCHES for b in branches), repo


def sourced(fact):
    return bool(fact.source.strip()) and fact.confidence in ("H", "M", "L")


def test_every_table_entry_carries_its_source_and_a_confidence():
    entries = []
    entries += [
        (f"wheel {r} {t}", b) for r, bs in tables.WHEEL_BUILDS.items() for t, b in bs.items()
    ]
    entries += [(f"CUDA {c}", rel) for c, rel in tables.CUDA_RELEASES.items()]
    entries += [(f"CUDA {m}.x floor", f) for m, f in tables.CUDA_MAJOR_FLOOR_FACTS.items()]
    entries += [(f"branch {b}", info) for b, info in tables.BRANCHES.items()]
    entries += [(f"ubuntu {k}", f) for k, f in tables.UBUNTU_BRANCH_FACTS.items()]
    entries += [(f"debian {k}", f) for k, f in tables.DEBIAN_BRANCH_FACTS.items()]
    entries += [(f"repo {k}", f) for k, f in tables.NVIDIA_REPO_FACTS.items()]
    entries += [("cards", card_table.CARD_SOURCES), ("debian kernel", tables.DEBIAN_KERNEL_FACT)]
    entries += [("fabric manager", tables.FABRICMANAGER_FACT)]
    missing = [name for name, fact in entries if not sourced(fact)]
    assert not missing, f"entries without a source: {missing}"
    # every keyed table has its facts: a new row without a source fails here
    assert set(tables.UBUNTU_BRANCH_FACTS) == set(tables.UBUNTU_BRANCHES)
    assert set(tables.DEBIAN_BRANCH_FACTS) == set(tables.DEBIAN_BRANCHES)
    assert set(tables.NVIDIA_REPO_FACTS) == set(tables.NVIDIA_REPO_BRANCHES_BY_REPO)
    assert set(tables.CUDA_MAJOR_FLOOR_FACTS) == set(tables.CUDA_MAJOR_FLOOR)
    assert all(source.strip() for _last, _cuda, source in tables.LEGACY_ARCHS.values())


@pytest.mark.parametrize("os_key", list(compat.OS_TABLE))
@pytest.mark.parametrize("device_id", sorted({card[0] for card in compat.CARDS if served(card)}))
def test_every_card_has_a_default_on_every_os(device_id, os_key):
    choice = choose(cards(device_id), os_key)
    assert choice.torch_index.startswith("cu") and choice.cuda
    assert compat.cuda_driver_floor(choice.cuda) <= choice.driver_branch
    if (os_key, choice.arch) in NO_SUPPORTED_BRANCH:
        # Debian's own 550 (trixie non-free, tests/data/facts/debian-13-apt-nvidia.txt) is the
        # one path, ended, and said so
        assert (choice.source, choice.driver_branch) == ("debian", 550)
        assert any("R550" in w and "no supported branch" in w for w in choice.warnings)
        return
    assert not compat.branch_ended(choice.driver_branch, TODAY)
    assert choice.warnings == ()


# Debian 13: NVIDIA's debian13 repository starts at 590 (NVIDIA/cuda-repo-management#38/#40) and
# R580 is the last branch for Maxwell, Pascal and Volta; Debian 13's own driver is 550 only.
NO_SUPPORTED_BRANCH = {("debian-13", arch) for arch in ("maxwell", "pascal", "volta")}


# --- wheel architectures, from PyTorch's build script (TORCH_CUDA_ARCH_LIST per CUDA case) ----

# Copied from pytorch/pytorch .ci/manywheel/build_cuda.sh as read with read_file:
# @00c7a380b836 (cases 12.6, 12.8, 12.9: the 2.8 variants) and @799d09f21574 (cases 12.6, 12.8,
# 12.9, 13.0: the 2.9 variants; aarch64 filtering not applied, x86_64 wheels).
BUILD_SCRIPT = {
    ("2.8", "cu126"): "5.0;6.0;7.0;7.5;8.0;8.6;9.0",
    ("2.8", "cu128"): "7.0;7.5;8.0;8.6;9.0;10.0;12.0",
    ("2.8", "cu129"): "7.0;7.5;8.0;8.6;9.0;10.0;12.0+PTX",
    ("2.9", "cu126"): "5.0;6.0;7.0;7.5;8.0;8.6;9.0",
    ("2.9", "cu128"): "7.0;7.5;8.0;8.6;9.0;10.0;12.0",
    ("2.9", "cu130"): "7.5;8.0;8.6;9.0;10.0;12.0+PTX",
}


@pytest.mark.parametrize("key, arch_list", list(BUILD_SCRIPT.items()), ids=str)
def test_wheel_arch_lists_are_pytorchs_build_script(key, arch_list):
    release, tag = key
    assert tables.WHEEL_BUILDS[release][tag].arch_list == arch_list
    assert tables.WHEEL_BUILDS[release][tag].confidence == "H"
    assert "build_cuda.sh" in tables.WHEEL_BUILDS[release][tag].source


# From the sources' prose (FIELD.md corrected 2026-12-01; pytorch/pytorch#172352 for 2.11):
# the oldest compute capability of each cu128/cu129/cu13x build, and that none has 5.x or 6.x.
OLDEST = {
    ("2.7", "cu128"): "7.5",
    ("2.8", "cu128"): "7.0",
    ("2.9", "cu128"): "7.0",
    ("2.10", "cu128"): "7.0",
    ("2.11", "cu128"): "7.5",
    ("2.8", "cu129"): "7.0",
    ("2.9", "cu130"): "7.5",
    ("2.12", "cu132"): "7.5",
    ("2.15", "cu132"): "7.5",
}


@pytest.mark.parametrize("key, oldest", list(OLDEST.items()), ids=str)
def test_oldest_architecture_per_build(key, oldest):
    release, tag = key
    assert tables.WHEEL_BUILDS[release][tag].arch_list.split(";")[0] == oldest


def test_no_cuda_12_8_or_newer_build_has_maxwell_or_pascal():
    for release, builds in tables.WHEEL_BUILDS.items():
        for tag, build in builds.items():
            if compat.index_cuda(tag) >= "12.8" or tag.startswith("cu13"):
                assert not re.search(r"(^|;)[56]\.", build.arch_list), (release, tag)


def test_torch_2_15_is_what_pypi_shipped():
    # PyPI's torch 2.15.0 (2026-10-28): Requires-Dist cuda-toolkit==13.2.2 and nvidia-*-cu13.
    assert "cu126" not in compat.TORCH_WHEELS["2.15"]
    assert "cu132" in compat.TORCH_WHEELS["2.15"]
    assert "13.2.2" in tables.WHEEL_BUILDS["2.15"]["cu132"].source
    assert "not reachable" in tables.WHEEL_BUILDS["2.15"]["cu130"].source


def refused(gpu, os_key="ubuntu-24.04", **request):
    with pytest.raises(Incompatible) as caught:
        choose([gpu_by_name(gpu)], os_key, Request(**request))
    assert caught.value.exit_code == 2
    return caught.value


def test_gtx_1080_ti_on_cu128_is_refused_with_a_working_combination():
    error = refused("GeForce GTX 1080 Ti", torch_index="cu128")
    assert "no kernels for Pascal" in error.message
    assert "cu126" in error.hint and "torch <= 2.14" in error.hint and "580" in error.hint


def test_titan_v_cu128_torch_2_7_is_refused():
    error = refused("TITAN V", torch_index="cu128", torch_version="2.7")
    assert "no kernels for Volta" in error.message and "2.7" in error.message
    assert "cu126" in error.hint


def test_titan_v_cu129_torch_2_8_is_accepted():
    request = Request(torch_index="cu129", torch_version="2.8")
    choice = choose([gpu_by_name("TITAN V")], "ubuntu-24.04", request)
    assert (choice.torch_index, choice.cuda, choice.driver_branch) == ("cu129", "12.9", 580)


@pytest.mark.parametrize("release", ["2.8", "2.9", "2.10"])
def test_titan_v_cu128_between_2_8_and_2_10_is_accepted(release):
    choice = choose(
        cards("1d81"), "ubuntu-24.04", Request(torch_index="cu128", torch_version=release)
    )
    assert choice.torch_index == "cu128"


def test_titan_v_cu128_without_a_version_is_capped_at_2_10():
    choice = choose(cards("1d81"), "ubuntu-24.04", Request(torch_index="cu128"))
    assert choice.torch_max == "2.10"


def test_torch_2_15_on_a_1080_ti_names_the_real_reason_not_the_driver():
    error = refused("GeForce GTX 1080 Ti", torch_version="2.15")
    assert "no build with kernels for Pascal" in error.message
    assert "driver" not in error.message
    assert "pytorch.version = 2.14" in error.hint and "cu126" in error.hint


# --- branch lifecycle (today = 2026-12-01) -----------------------------------------------------

ENDED = [535, 550, 570, 575, 590, 610, 615]  # FIELD.md "Branch status late 2026", R615 Sept 2026
CURRENT = [580, 595, 620]


@pytest.mark.parametrize("branch", ENDED)
def test_ended_branch_chosen_explicitly_warns(branch):
    assert compat.branch_ended(branch, TODAY)
    choice = choose(cards("2684"), "ubuntu-24.04", Request(branch=branch))
    assert choice.driver_branch == branch
    assert any(f"R{branch}" in w for w in choice.warnings)
    assert "warning:" in compat.describe(choice)
    assert compat.to_json(choice)["warnings"] == list(choice.warnings)


@pytest.mark.parametrize("branch", CURRENT)
def test_current_branch_has_no_warning(branch):
    assert not compat.branch_ended(branch, TODAY)
    assert choose(cards("2684"), "ubuntu-24.04", Request(branch=branch)).warnings == ()


def test_end_dates():
    assert compat.branch_ended(615, datetime.date(2026, 10, 1))
    assert not compat.branch_ended(615, datetime.date(2026, 9, 30))
    assert not compat.branch_ended(620, datetime.date(2029, 9, 30))
    assert compat.branch_ended(620, datetime.date(2029, 10, 1))


def test_the_date_that_tests_pin_is_the_one_every_lookup_reads(monkeypatch):
    """The autouse pin works only if choose() and branch_ended() both read the date through
    compat.versions.current_date: a later day must reach them without today= (R580 LTSB ends
    June 2028, NVIDIA's lifecycle)."""
    monkeypatch.setattr(compat.versions, "current_date", lambda: datetime.date(2028, 7, 1))
    assert compat.branch_ended(580)
    choice = choose(cards("2684"), "ubuntu-24.04", Request(branch=580))
    assert any("R580 reached end of life in June 2028" in w for w in choice.warnings)


def test_default_moves_off_580_only_when_it_is_no_longer_supported():
    later = datetime.date(2028, 7, 1)  # R580 LTSB ends June 2028; R620 LTSB runs to Sept 2029
    choice = choose(cards("2684"), "ubuntu-24.04", today=later)
    assert (choice.driver_branch, choice.source) == (620, "nvidia")
    assert choice.warnings == ()
    pascal = choose(cards("1b06"), "ubuntu-24.04", today=later)  # nothing newer supports it
    assert pascal.driver_branch == 580 and any("R580" in w for w in pascal.warnings)


def test_debian13_repo_reportedly_carries_590_and_newer_only():
    assert min(tables.NVIDIA_REPO_BRANCHES_BY_REPO["debian13"]) == 590
    # a maintainer's word in NVIDIA/cuda-repo-management #40, no listing read: M, not H
    assert tables.NVIDIA_REPO_FACTS["debian13"].confidence == "M"
    assert "#38" in tables.NVIDIA_REPO_FACTS["debian13"].source
    assert 580 in tables.NVIDIA_REPO_BRANCHES_BY_REPO["debian12"]


def test_debian_nonfree_535_warns_and_points_at_nvidias_repo():
    choice = choose(cards("2684"), "debian-12", Request(source="debian"))
    assert any(
        "R535" in w and "June 2026" in w and "driver.source = nvidia" in w for w in choice.warnings
    )


@pytest.mark.parametrize("cuda", ["13.4", "13.5"])
def test_cuda_13_4_and_13_5_need_driver_580(cuda):
    choice = choose(cards("2684"), "ubuntu-24.04", Request(cuda=cuda))
    assert choice.cuda == cuda
    with pytest.raises(Incompatible) as caught:
        choose(cards("2684"), "ubuntu-24.04", Request(cuda=cuda, branch=570))
    assert "needs driver >= 580" in caught.value.message


def test_r615_and_r620_are_in_the_table():
    assert choose(cards("2684"), "ubuntu-24.04", Request(branch=620)).source == "nvidia"
    assert choose(cards("2684"), "ubuntu-24.04", Request(branch=615)).driver_branch == 615


# --- card lookup --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, device_id",
    [
        ("B200", "2901"),
        ("3090", "2204"),
        ("4090", "2684"),
        ("rtx3090", "2204"),
        ("RTX3090", "2204"),
        ("geforce  rtx 3090", "2204"),
        ("NVIDIA GeForce RTX 3090", "2204"),
        ("gtx1080ti", "1b06"),
        ("RTX 4060 Laptop GPU", "28a0"),
        ("NVIDIA GeForce RTX 4060 Laptop GPU", "28a0"),
        ("rtx 4060 mobile", "28a0"),
        ("Quadro RTX 8000", "1e30"),
        ("NVIDIA A100-SXM4-80GB", "20b2"),
        ("NVIDIA A100 80GB PCIe", "20b5"),
        ("NVIDIA H100 80GB HBM3", "2330"),
        ("NVIDIA H200", "2335"),
        ("Tesla V100-PCIE-32GB", "1db6"),
        ("Tesla P100-PCIE-16GB", "15f8"),
        ("Tesla T4", "1eb8"),
        ("NVIDIA RTX A6000", "2230"),
        ("2204", "2204"),
        ("10de:28a0", "28a0"),
    ],
)
def test_names_first_then_ids(text, device_id):
    gpu = parse_gpu(text)
    assert gpu is not None and gpu.device_id == device_id


def test_quadro_rtx_8000_has_48_gb():
    assert parse_gpu("Quadro RTX 8000").vram_gb == 48


def test_rtx_4060_laptop_is_ada_8_gb():
    gpu = parse_gpu("10de:28a0")
    assert (gpu.name, gpu.arch, gpu.compute, gpu.vram_gb) == (
        "GeForce RTX 4060 Laptop GPU",
        "ada",
        "8.9",
        8,
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A100", ["A100 SXM4 40GB (10de:20b0, 40 GB)", "A100 PCIe 80GB (10de:20b5, 80 GB)"]),
        ("H100", ["H100 PCIe (10de:2331, 80 GB)", "H100 NVL (10de:2321, 94 GB)"]),
        ("H200", ["H200 SXM 141GB (10de:2335, 141 GB)", "H200 NVL (10de:233b, 141 GB)"]),
        ("V100", ["Tesla V100 PCIe 16GB (10de:1db4, 16 GB)", "Tesla V100S PCIe 32GB"]),
        ("Tesla P100", ["Tesla P100 PCIe 12GB (10de:15f7, 12 GB)", "Tesla P100 SXM2 16GB"]),
        ("RTX PRO 6000", ["RTX PRO 6000 Blackwell Server Edition (10de:2bb5, 96 GB)"]),
    ],
)
def test_several_matches_list_the_candidates(text, expected):
    with pytest.raises(UnknownCard) as caught:
        parse_gpu(text)
    assert caught.value.exit_code == 2 and "matches" in caught.value.message
    for line in expected:
        assert line in caught.value.message


def pci_ids():
    names = {}
    for line in (FACTS / "pci-ids-nvidia-2026.08.22.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            device_id, _, name = line.partition("  ")
            names[device_id] = name
    return names


def test_card_ids_and_names_agree_with_pci_ids():
    names = pci_ids()
    for device_id, name, *_ in compat.CARDS:
        assert device_id in names, f"{device_id} ({name}) is not in pci.ids"
        model = next((w for w in name.lower().split() if any(c.isdigit() for c in w)), "")
        if model:
            assert model in names[device_id].lower(), (device_id, name, names[device_id])


@pytest.mark.parametrize("row", compat.CARDS, ids=lambda row: f"{row[0]}-{row[1]}")
def test_every_card_by_its_name_and_by_its_id(row):
    device_id, name, arch, cc, _vram = row
    by_name = parse_gpu(name)
    assert (by_name.name, by_name.arch, by_name.compute) == (name, arch, cc)
    assert parse_gpu(f"NVIDIA {name}").name == name  # as nvidia-smi prints it
    by_id = parse_gpu(f"10de:{device_id}")
    assert by_id.device_id == device_id and (by_id.arch, by_id.compute) == (arch, cc)


@pytest.mark.parametrize("alias, device_id", list(card_table.SMI_NAMES.items()))
def test_nvidia_smi_names(alias, device_id):
    assert parse_gpu(alias).device_id == device_id


# --- refusals with the real reason ---------------------------------------------------------------


@pytest.mark.parametrize("gpu", ["GeForce GTX 780", "Tesla K80", "10de:1004"])
def test_kepler_is_refused_with_the_last_driver(gpu):
    with pytest.raises(Incompatible) as caught:
        choose([parse_gpu(gpu)], "ubuntu-24.04")
    assert "Kepler" in caught.value.message and "R470" in caught.value.message
    assert "CUDA 11" in caught.value.message and "PyTorch" in caught.value.message


def test_arch_kepler_is_known_but_refused():
    assert compat.arch_of("kepler") == "kepler"
    with pytest.raises(Incompatible) as caught:
        choose([], "ubuntu-24.04", arch="kepler")
    assert "R470" in caught.value.message


@pytest.mark.parametrize(
    "arch, part", [("7.2", "Xavier"), ("8.7", "Orin"), ("11.0", "Thor"), ("12.1", "GB10")]
)
def test_arm_only_parts_are_refused_on_x86(arch, part):
    with pytest.raises(Incompatible) as caught:
        choose([], "ubuntu-24.04", arch=arch)
    assert part in caught.value.message and "Arm" in caught.value.message
    assert "JetPack" in caught.value.hint


@pytest.mark.parametrize("device_id", ["2b00", "2e12"])  # Jetson AGX Thor, GB10 (pci.ids)
def test_arm_only_cards_by_id_are_refused(device_id):
    with pytest.raises(Incompatible):
        choose(cards(device_id), "ubuntu-24.04")


def test_unknown_id_with_arch_does_not_say_no_gpu_found():
    choice = choose([], "ubuntu-24.04", arch="ampere", unknown=["10de:ffff"])
    text = " ".join(choice.reasons)
    assert "no NVIDIA GPU found" not in text and "10de:ffff" in text


# --- Debian's module flavour: compat names the package the driver step installs -----------------


def test_debian_kernel_packages_are_the_recorded_ones():
    text = (FACTS / "debian-12-apt-nvidia.txt").read_text()
    records = {}
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != "#"
        )
        if "Package" in fields:
            records[fields["Package"]] = fields
    open_pkg = compat.debian_kernel_package("open")
    assert records[open_pkg]["Section"].startswith("contrib/")
    assert "nvidia-open-kernel-535" in records[open_pkg]["Provides"]
    proprietary = compat.debian_kernel_package("proprietary")
    assert records[proprietary]["Section"].startswith("non-free/")
    assert "nvidia-kernel-535" in records[proprietary]["Provides"]
    assert records[open_pkg]["Version"].startswith("535.")


@pytest.mark.parametrize(
    "flavour, package, component",
    [
        ("open", "nvidia-open-kernel-dkms", "contrib"),
        ("proprietary", "nvidia-kernel-dkms", "non-free"),
    ],
)
def test_debian_choice_names_the_module_package(flavour, package, component):
    choice = choose(cards("2684"), "debian-12", Request(source="debian", flavour=flavour))
    assert choice.flavour == flavour
    assert f"Debian's {flavour} module: {package} from {component}, built by DKMS" in choice.reasons


def test_old_branches_default_to_proprietary_modules():
    # NVIDIA: the open modules became the default with 560
    assert choose(cards("2684"), "ubuntu-24.04", Request(branch=550)).flavour == "proprietary"
    assert choose(cards("2684"), "ubuntu-24.04", Request(branch=570)).flavour == "open"


# --- the CLI: --set without --host, ambiguous names --------------------------------------------


def run_cli(*args):
    return CliRunner().invoke(cli, ["compat", *args])


def test_cli_set_without_host_is_applied():
    result = run_cli("--os", "ubuntu-24.04", "--gpu", "4090", "--set", "driver.branch=570")
    assert result.exit_code == 0, result.output
    assert "driver:   570" in result.output


@pytest.mark.parametrize("item", ["nonsense.key=1", "ssh.port=2222", "driver.branch=abc"])
def test_cli_set_without_host_is_never_silently_ignored(item):
    result = run_cli("--os", "ubuntu-24.04", "--gpu", "4090", "--set", item)
    assert result.exit_code == 2 and item in result.output


def test_cli_ambiguous_name_exits_2_with_the_candidates():
    result = run_cli("--os", "ubuntu-24.04", "--gpu", "H100")
    assert result.exit_code == 2
    assert "10de:2331" in result.output and "80 GB" in result.output


def test_cli_unknown_id_with_arch():
    result = run_cli("--os", "ubuntu-24.04", "--gpu", "10de:ffff", "--arch", "ampere")
    assert result.exit_code == 0, result.output
    assert "no NVIDIA GPU found" not in result.output and "10de:ffff" in result.output
