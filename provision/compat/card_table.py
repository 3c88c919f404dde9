"""compat's card table: the NVIDIA PCI ids it knows, with their architecture and memory.

Apart from `tables` (the version facts) because it is long and grows by a row a card: one
source (CARD_SOURCES) covers every row, so a new card is one line here. Kepler and the Arm-only
parts are listed too, so that the choice can refuse them with the real reason.
"""

from __future__ import annotations

from provision.compat.tables import Fact

# PCI device id (vendor 10de) -> name, architecture, compute capability, VRAM in GB.
CARD_SOURCES = Fact(
    "ids and names: pci.ids 2026.08.22 (pciutils/pciids @c1c12547d626, recorded in "
    "tests/data/facts/pci-ids-nvidia-2026.08.22.txt); names as nvidia-smi prints them; compute "
    "capability: developer.nvidia.com/cuda-gpus; VRAM: vendor spec sheets",
    "H",
)
# Several ids of one card (revisions, LHR, OEM) share its name. A name-only row (the same id as
# an earlier row) serves lookups by name: the id lookup gives the first row.
CARDS: tuple[tuple[str, str, str, str, float], ...] = (
    # Kepler: known, so that they are refused with the reason
    ("1180", "GeForce GTX 680", "kepler", "3.0", 2),
    ("1184", "GeForce GTX 770", "kepler", "3.0", 2),
    ("1004", "GeForce GTX 780", "kepler", "3.5", 3),
    ("100a", "GeForce GTX 780 Ti", "kepler", "3.5", 3),
    ("1005", "GeForce GTX TITAN", "kepler", "3.5", 6),
    ("100c", "GeForce GTX TITAN Black", "kepler", "3.5", 6),
    ("1024", "Tesla K40c", "kepler", "3.5", 12),
    ("1023", "Tesla K40m", "kepler", "3.5", 12),
    ("102d", "Tesla K80", "kepler", "3.7", 12),  # two GPUs of 12 GB on one board
    # Maxwell
    ("1380", "GeForce GTX 750 Ti", "maxwell", "5.0", 2),
    ("1402", "GeForce GTX 950", "maxwell", "5.2", 2),
    ("1401", "GeForce GTX 960", "maxwell", "5.2", 2),
    ("13c2", "GeForce GTX 970", "maxwell", "5.2", 4),
    ("13c0", "GeForce GTX 980", "maxwell", "5.2", 4),
    ("17c8", "GeForce GTX 980 Ti", "maxwell", "5.2", 6),
    ("17c2", "GeForce GTX TITAN X", "maxwell", "5.2", 12),
    ("13f1", "Quadro M4000", "maxwell", "5.2", 8),
    ("13f0", "Quadro M5000", "maxwell", "5.2", 8),
    ("17f0", "Quadro M6000", "maxwell", "5.2", 12),
    ("17f1", "Quadro M6000 24GB", "maxwell", "5.2", 24),
    ("17fd", "Tesla M40", "maxwell", "5.2", 12),
    ("13f2", "Tesla M60", "maxwell", "5.2", 8),  # two GPUs of 8 GB on one board
    # Pascal
    ("1d01", "GeForce GT 1030", "pascal", "6.1", 2),
    ("1c81", "GeForce GTX 1050", "pascal", "6.1", 2),
    ("1c82", "GeForce GTX 1050 Ti", "pascal", "6.1", 4),
    ("1c02", "GeForce GTX 1060 3GB", "pascal", "6.1", 3),
    ("1b84", "GeForce GTX 1060 3GB", "pascal", "6.1", 3),
    ("1c03", "GeForce GTX 1060 6GB", "pascal", "6.1", 6),
    ("1c06", "GeForce GTX 1060 6GB", "pascal", "6.1", 6),
    ("1b83", "GeForce GTX 1060 6GB", "pascal", "6.1", 6),
    ("1b81", "GeForce GTX 1070", "pascal", "6.1", 8),
    ("1b82", "GeForce GTX 1070 Ti", "pascal", "6.1", 8),
    ("1b80", "GeForce GTX 1080", "pascal", "6.1", 8),
    ("1b06", "GeForce GTX 1080 Ti", "pascal", "6.1", 11),
    ("1b00", "TITAN X (Pascal)", "pascal", "6.1", 12),
    ("1b02", "TITAN Xp", "pascal", "6.1", 12),
    ("1cb1", "Quadro P1000", "pascal", "6.1", 4),
    ("1c30", "Quadro P2000", "pascal", "6.1", 5),
    ("1bb1", "Quadro P4000", "pascal", "6.1", 8),
    ("1bb0", "Quadro P5000", "pascal", "6.1", 16),
    ("1b30", "Quadro P6000", "pascal", "6.1", 24),
    ("15f0", "Quadro GP100", "pascal", "6.0", 16),
    ("1bb3", "Tesla P4", "pascal", "6.1", 8),
    ("1b38", "Tesla P40", "pascal", "6.1", 24),
    ("15f7", "Tesla P100 PCIe 12GB", "pascal", "6.0", 12),
    ("15f8", "Tesla P100 PCIe 16GB", "pascal", "6.0", 16),
    ("15f9", "Tesla P100 SXM2 16GB", "pascal", "6.0", 16),
    # Volta
    ("1d81", "TITAN V", "volta", "7.0", 12),
    ("1dba", "Quadro GV100", "volta", "7.0", 32),
    ("1db1", "Tesla V100 SXM2 16GB", "volta", "7.0", 16),
    ("1df5", "Tesla V100 SXM2 16GB", "volta", "7.0", 16),
    ("1db3", "Tesla V100 FHHL 16GB", "volta", "7.0", 16),
    ("1db4", "Tesla V100 PCIe 16GB", "volta", "7.0", 16),
    ("1db5", "Tesla V100 SXM2 32GB", "volta", "7.0", 32),
    ("1db6", "Tesla V100 PCIe 32GB", "volta", "7.0", 32),
    ("1db8", "Tesla V100 SXM3 32GB", "volta", "7.0", 32),
    ("1df6", "Tesla V100S PCIe 32GB", "volta", "7.0", 32),
    # Turing
    ("1f82", "GeForce GTX 1650", "turing", "7.5", 4),
    ("2187", "GeForce GTX 1650 SUPER", "turing", "7.5", 4),
    ("2184", "GeForce GTX 1660", "turing", "7.5", 6),
    ("21c4", "GeForce GTX 1660 SUPER", "turing", "7.5", 6),
    ("2182", "GeForce GTX 1660 Ti", "turing", "7.5", 6),
    ("1f08", "GeForce RTX 2060", "turing", "7.5", 6),
    ("1e89", "GeForce RTX 2060", "turing", "7.5", 6),
    ("1f03", "GeForce RTX 2060 12GB", "turing", "7.5", 12),
    ("1f06", "GeForce RTX 2060 SUPER", "turing", "7.5", 8),
    ("1f42", "GeForce RTX 2060 SUPER", "turing", "7.5", 8),
    ("1f47", "GeForce RTX 2060 SUPER", "turing", "7.5", 8),
    ("1f02", "GeForce RTX 2070", "turing", "7.5", 8),
    ("1f07", "GeForce RTX 2070", "turing", "7.5", 8),
    ("1e84", "GeForce RTX 2070 SUPER", "turing", "7.5", 8),
    ("1ec2", "GeForce RTX 2070 SUPER", "turing", "7.5", 8),
    ("1ec7", "GeForce RTX 2070 SUPER", "turing", "7.5", 8),
    ("1e82", "GeForce RTX 2080", "turing", "7.5", 8),
    ("1e87", "GeForce RTX 2080", "turing", "7.5", 8),
    ("1e81", "GeForce RTX 2080 SUPER", "turing", "7.5", 8),
    ("1e04", "GeForce RTX 2080 Ti", "turing", "7.5", 11),
    ("1e07", "GeForce RTX 2080 Ti", "turing", "7.5", 11),
    ("1f11", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),  # pci.ids "2060 Mobile"
    ("1f15", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),
    ("1f51", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),
    ("1f55", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),
    ("1f12", "GeForce RTX 2060 Laptop GPU", "turing", "7.5", 6),  # Max-Q
    ("1f10", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1f50", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1f54", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1f14", "GeForce RTX 2070 Laptop GPU", "turing", "7.5", 8),
    ("1e91", "GeForce RTX 2070 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1ed1", "GeForce RTX 2070 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1e90", "GeForce RTX 2080 Laptop GPU", "turing", "7.5", 8),
    ("1ed0", "GeForce RTX 2080 Laptop GPU", "turing", "7.5", 8),
    ("1e93", "GeForce RTX 2080 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1ed3", "GeForce RTX 2080 SUPER Laptop GPU", "turing", "7.5", 8),
    ("1e02", "TITAN RTX", "turing", "7.5", 24),
    ("1eb1", "Quadro RTX 4000", "turing", "7.5", 8),
    ("1eb0", "Quadro RTX 5000", "turing", "7.5", 16),
    ("1e36", "Quadro RTX 6000", "turing", "7.5", 24),
    ("1e30", "Quadro RTX 6000/8000", "turing", "7.5", 24),  # the 8000 (48 GB) shares the id
    ("1e78", "Quadro RTX 6000/8000", "turing", "7.5", 24),
    ("1e30", "Quadro RTX 8000", "turing", "7.5", 48),  # name-only row: nvidia-smi's name
    ("1eb8", "Tesla T4", "turing", "7.5", 16),
    # Ampere
    ("2507", "GeForce RTX 3050", "ampere", "8.6", 8),
    ("2582", "GeForce RTX 3050 8GB", "ampere", "8.6", 8),
    ("2503", "GeForce RTX 3060", "ampere", "8.6", 12),
    ("2504", "GeForce RTX 3060", "ampere", "8.6", 12),  # Lite Hash Rate
    ("2544", "GeForce RTX 3060", "ampere", "8.6", 12),
    ("2487", "GeForce RTX 3060", "ampere", "8.6", 12),
    ("2486", "GeForce RTX 3060 Ti", "ampere", "8.6", 8),
    ("2489", "GeForce RTX 3060 Ti", "ampere", "8.6", 8),  # Lite Hash Rate
    ("2484", "GeForce RTX 3070", "ampere", "8.6", 8),
    ("2488", "GeForce RTX 3070", "ampere", "8.6", 8),  # Lite Hash Rate
    ("2482", "GeForce RTX 3070 Ti", "ampere", "8.6", 8),
    ("2206", "GeForce RTX 3080", "ampere", "8.6", 10),
    ("2216", "GeForce RTX 3080", "ampere", "8.6", 10),  # Lite Hash Rate
    ("220a", "GeForce RTX 3080 12GB", "ampere", "8.6", 12),
    ("2208", "GeForce RTX 3080 Ti", "ampere", "8.6", 12),
    ("2204", "GeForce RTX 3090", "ampere", "8.6", 24),
    ("2203", "GeForce RTX 3090 Ti", "ampere", "8.6", 24),
    ("25a2", "GeForce RTX 3050 Laptop GPU", "ampere", "8.6", 4),  # pci.ids "3050 Mobile"
    ("25a5", "GeForce RTX 3050 Laptop GPU", "ampere", "8.6", 4),
    ("25a0", "GeForce RTX 3050 Ti Laptop GPU", "ampere", "8.6", 4),
    ("25e0", "GeForce RTX 3050 Ti Laptop GPU", "ampere", "8.6", 4),
    ("25ac", "GeForce RTX 3050 6GB Laptop GPU", "ampere", "8.6", 6),
    ("2520", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("2521", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("2560", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("2561", "GeForce RTX 3060 Laptop GPU", "ampere", "8.6", 6),
    ("249d", "GeForce RTX 3070 Laptop GPU", "ampere", "8.6", 8),
    ("24dd", "GeForce RTX 3070 Laptop GPU", "ampere", "8.6", 8),
    ("24a0", "GeForce RTX 3070 Ti Laptop GPU", "ampere", "8.6", 8),
    ("24e0", "GeForce RTX 3070 Ti Laptop GPU", "ampere", "8.6", 8),
    ("249c", "GeForce RTX 3080 Laptop GPU", "ampere", "8.6", 8),  # 8 or 16 GB boards
    ("24dc", "GeForce RTX 3080 Laptop GPU", "ampere", "8.6", 8),
    ("2420", "GeForce RTX 3080 Ti Laptop GPU", "ampere", "8.6", 16),
    ("2460", "GeForce RTX 3080 Ti Laptop GPU", "ampere", "8.6", 16),
    ("2531", "RTX A2000", "ampere", "8.6", 6),
    ("2571", "RTX A2000 12GB", "ampere", "8.6", 12),
    ("24b0", "RTX A4000", "ampere", "8.6", 16),
    ("2232", "RTX A4500", "ampere", "8.6", 20),
    ("2231", "RTX A5000", "ampere", "8.6", 24),
    ("2233", "RTX A5500", "ampere", "8.6", 24),
    ("2230", "RTX A6000", "ampere", "8.6", 48),
    ("2236", "A10", "ampere", "8.6", 24),
    ("2237", "A10G", "ampere", "8.6", 24),
    ("2235", "A40", "ampere", "8.6", 48),
    ("20b7", "A30", "ampere", "8.0", 24),
    ("20b0", "A100 SXM4 40GB", "ampere", "8.0", 40),
    ("20b1", "A100 PCIe 40GB", "ampere", "8.0", 40),
    ("20f1", "A100 PCIe 40GB", "ampere", "8.0", 40),
    ("20b2", "A100 SXM4 80GB", "ampere", "8.0", 80),
    ("20b5", "A100 PCIe 80GB", "ampere", "8.0", 80),
    # Ada Lovelace
    ("2882", "GeForce RTX 4060", "ada", "8.9", 8),
    ("2808", "GeForce RTX 4060", "ada", "8.9", 8),
    ("2803", "GeForce RTX 4060 Ti", "ada", "8.9", 8),
    ("2805", "GeForce RTX 4060 Ti 16GB", "ada", "8.9", 16),
    ("2786", "GeForce RTX 4070", "ada", "8.9", 12),
    ("2709", "GeForce RTX 4070", "ada", "8.9", 12),
    ("2783", "GeForce RTX 4070 SUPER", "ada", "8.9", 12),
    ("2782", "GeForce RTX 4070 Ti", "ada", "8.9", 12),
    ("2705", "GeForce RTX 4070 Ti SUPER", "ada", "8.9", 16),
    ("2704", "GeForce RTX 4080", "ada", "8.9", 16),
    ("2702", "GeForce RTX 4080 SUPER", "ada", "8.9", 16),
    ("2684", "GeForce RTX 4090", "ada", "8.9", 24),
    ("2685", "GeForce RTX 4090 D", "ada", "8.9", 24),
    ("28a1", "GeForce RTX 4050 Laptop GPU", "ada", "8.9", 6),  # pci.ids "4050 Max-Q / Mobile"
    ("28e1", "GeForce RTX 4050 Laptop GPU", "ada", "8.9", 6),
    ("28a0", "GeForce RTX 4060 Laptop GPU", "ada", "8.9", 8),
    ("28e0", "GeForce RTX 4060 Laptop GPU", "ada", "8.9", 8),
    ("2820", "GeForce RTX 4070 Laptop GPU", "ada", "8.9", 8),
    ("2860", "GeForce RTX 4070 Laptop GPU", "ada", "8.9", 8),
    ("27a0", "GeForce RTX 4080 Laptop GPU", "ada", "8.9", 12),
    ("27e0", "GeForce RTX 4080 Laptop GPU", "ada", "8.9", 12),
    ("2717", "GeForce RTX 4090 Laptop GPU", "ada", "8.9", 16),
    ("2757", "GeForce RTX 4090 Laptop GPU", "ada", "8.9", 16),
    ("28b0", "RTX 2000 Ada Generation", "ada", "8.9", 16),
    ("27b2", "RTX 4000 Ada Generation", "ada", "8.9", 20),
    ("27b0", "RTX 4000 SFF Ada Generation", "ada", "8.9", 20),
    ("27b1", "RTX 4500 Ada Generation", "ada", "8.9", 24),
    ("26b2", "RTX 5000 Ada Generation", "ada", "8.9", 32),
    ("26b1", "RTX 6000 Ada Generation", "ada", "8.9", 48),
    ("27b8", "L4", "ada", "8.9", 24),
    ("26b5", "L40", "ada", "8.9", 48),
    ("26b9", "L40S", "ada", "8.9", 48),
    # Hopper
    ("2331", "H100 PCIe", "hopper", "9.0", 80),
    ("2330", "H100 SXM5 80GB", "hopper", "9.0", 80),
    ("2339", "H100 SXM5 94GB", "hopper", "9.0", 94),
    ("2321", "H100 NVL", "hopper", "9.0", 94),  # pci.ids: "H100L 94GB"
    ("2335", "H200 SXM 141GB", "hopper", "9.0", 141),
    ("233b", "H200 NVL", "hopper", "9.0", 141),
    # Blackwell
    ("2901", "B200", "blackwell", "10.0", 180),
    ("3182", "B300 SXM6", "blackwell", "10.3", 288),
    ("2d83", "GeForce RTX 5050", "blackwell", "12.0", 8),
    ("2d05", "GeForce RTX 5060", "blackwell", "12.0", 8),
    ("2d04", "GeForce RTX 5060 Ti", "blackwell", "12.0", 16),  # 8 GB boards share the id
    ("2f04", "GeForce RTX 5070", "blackwell", "12.0", 12),
    ("2c05", "GeForce RTX 5070 Ti", "blackwell", "12.0", 16),
    ("2c02", "GeForce RTX 5080", "blackwell", "12.0", 16),
    ("2b85", "GeForce RTX 5090", "blackwell", "12.0", 32),
    ("2b87", "GeForce RTX 5090 D", "blackwell", "12.0", 32),
    ("2b8c", "GeForce RTX 5090 D V2", "blackwell", "12.0", 24),
    ("2d98", "GeForce RTX 5050 Laptop GPU", "blackwell", "12.0", 8),  # "5050 Max-Q / Mobile"
    ("2dd8", "GeForce RTX 5050 Laptop GPU", "blackwell", "12.0", 8),
    ("2d19", "GeForce RTX 5060 Laptop GPU", "blackwell", "12.0", 8),
    ("2d59", "GeForce RTX 5060 Laptop GPU", "blackwell", "12.0", 8),
    ("2d18", "GeForce RTX 5070 Laptop GPU", "blackwell", "12.0", 8),
    ("2d58", "GeForce RTX 5070 Laptop GPU", "blackwell", "12.0", 8),
    ("2f18", "GeForce RTX 5070 Ti Laptop GPU", "blackwell", "12.0", 12),
    ("2f58", "GeForce RTX 5070 Ti Laptop GPU", "blackwell", "12.0", 12),
    ("2c19", "GeForce RTX 5080 Laptop GPU", "blackwell", "12.0", 16),
    ("2c59", "GeForce RTX 5080 Laptop GPU", "blackwell", "12.0", 16),
    ("2c18", "GeForce RTX 5090 Laptop GPU", "blackwell", "12.0", 24),
    ("2c58", "GeForce RTX 5090 Laptop GPU", "blackwell", "12.0", 24),
    ("2c34", "RTX PRO 4000 Blackwell", "blackwell", "12.0", 24),
    ("2c31", "RTX PRO 4500 Blackwell", "blackwell", "12.0", 32),
    ("2bb3", "RTX PRO 5000 Blackwell", "blackwell", "12.0", 48),
    ("2bb1", "RTX PRO 6000 Blackwell Workstation Edition", "blackwell", "12.0", 96),
    ("2bb4", "RTX PRO 6000 Blackwell Max-Q Workstation Edition", "blackwell", "12.0", 96),
    ("2bb5", "RTX PRO 6000 Blackwell Server Edition", "blackwell", "12.0", 96),
    # Arm-only parts: known, so that they are refused with the reason (unified memory)
    ("2b00", "Jetson AGX Thor", "blackwell", "11.0", 128),
    ("2e12", "GB10", "blackwell", "12.1", 128),
)
# nvidia-smi's names where they differ from the table's (matched in full, "NVIDIA" included):
# [M: nvidia-smi output in vendor docs and issue threads].
SMI_NAMES: dict[str, str] = {
    "NVIDIA A100-SXM4-40GB": "20b0",
    "NVIDIA A100-PCIE-40GB": "20b1",
    "NVIDIA A100-SXM4-80GB": "20b2",
    "NVIDIA A100 80GB PCIe": "20b5",
    "NVIDIA H100 80GB HBM3": "2330",
    "NVIDIA H100 PCIe": "2331",
    "NVIDIA H100 NVL": "2321",
    "NVIDIA H200": "2335",
    "NVIDIA H200 NVL": "233b",
    "NVIDIA B200": "2901",
    "Tesla V100-SXM2-16GB": "1db1",
    "Tesla V100-PCIE-16GB": "1db4",
    "Tesla V100-SXM2-32GB": "1db5",
    "Tesla V100-PCIE-32GB": "1db6",
    "Tesla V100S-PCIE-32GB": "1df6",
    "Tesla P100-PCIE-12GB": "15f7",
    "Tesla P100-PCIE-16GB": "15f8",
    "Tesla P100-SXM2-16GB": "15f9",
}
NVIDIA_VENDOR = "10de"

# NVSwitch: an NVIDIA PCI function of class 0x0680 (bridge, other) on HGX/DGX-class boards;
# such boxes need nvidia-fabricmanager of the driver's own branch, or CUDA fails with error 802
# ("system not yet initialized"). [H: pci.ids 2026.08.22 1af1 "GA100 [A100 NVSwitch]", 22a3
# "GH100 [H100 NVSwitch]"] [M: NVIDIA Fabric Manager user guide]
NVSWITCH_CLASS = "0x0680"
NVSWITCH_IDS: dict[str, str] = {"1af1": "A100 NVSwitch", "22a3": "H100 NVSwitch"}
