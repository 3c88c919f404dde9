"""compat: the card/OS/request table, as data-driven cases, and the lookups around it."""

import json
import re
from pathlib import Path

import pytest

from provision import compat
from provision.compat import Incompatible, Request, choose, gpu_by_id, gpu_by_name, parse_gpu
from provision.errors import ConfigError
from provision.facts import parse_facts

FACTS = Path(__file__).parent.parent / "data" / "facts"


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
    ("unknown-arch", [], "ubuntu-24.04", Request(), "kepler",
     ["unknown architecture 'kepler'"], ["pascal", "compute capability"]),
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
    assert "driver 575 as asked" in choice.reasons
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
        parse_gpu("10de:ffff", "kepler")
    choice = choose([], "ubuntu-24.04", arch="8.6")
    assert (choice.arch, choice.flavour, choice.torch_index) == ("ampere", "open", "cu130")


@pytest.mark.parametrize("text", ["10de:ffff", "GeForce 8800 GT"])
def test_parse_gpu_unknown(text):
    with pytest.raises(Incompatible) as caught:
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
    [("ubuntu-22.04", "ubuntu2204"), ("ubuntu-24.04", "ubuntu2404"), ("debian-12", "debian12")],
)
def test_cuda_repo_distro(os_key, distro):
    assert compat.cuda_repo_distro(os_key) == distro


@pytest.mark.parametrize("os_key", ["ubuntu-20.04", "debian-11", "ubuntu-26.04", "fedora-40"])
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


# The tables themselves: ids well-formed and unique, every fact consistent with the others.


def test_card_table_is_consistent():
    ids = [card[0] for card in compat.CARDS]
    assert len(ids) == len(set(ids))
    assert len({card[1] for card in compat.CARDS}) >= 50  # distinct card models
    for device_id, name, arch, cc, vram in compat.CARDS:
        assert re.fullmatch(r"[0-9a-f]{4}", device_id), device_id
        assert arch in compat.ARCH_ORDER, name
        assert cc in compat.ARCH_COMPUTES[arch], name
        assert 1 <= vram <= 300, name
    assert {card[2] for card in compat.CARDS} == set(compat.ARCH_ORDER)


def test_wheel_tables_are_consistent():
    for release, tags in compat.TORCH_WHEELS.items():
        assert re.fullmatch(r"\d+\.\d+", release)
        for tag in tags:
            assert tag in compat.WHEEL_ARCHS
            assert compat.index_cuda(tag) in compat.CUDA_DRIVER
    for oldest, newest in compat.WHEEL_ARCHS.values():
        assert compat.ARCH_ORDER.index(oldest) <= compat.ARCH_ORDER.index(newest)
    for os_key, branches in {**compat.UBUNTU_BRANCHES, **compat.DEBIAN_BRANCHES}.items():
        assert os_key in compat.OS_TABLE
        assert all(compat.max_cuda_for_branch(b) for b in branches)


@pytest.mark.parametrize("os_key", list(compat.OS_TABLE))
@pytest.mark.parametrize("device_id", [card[0] for card in compat.CARDS])
def test_every_card_has_a_default_on_every_os(device_id, os_key):
    choice = choose(cards(device_id), os_key)
    assert choice.torch_index.startswith("cu") and choice.cuda
    assert compat.cuda_driver_floor(choice.cuda) <= choice.driver_branch
