"""Wake-on-LAN from the laptop: the magic packet (6 x 0xFF, then the MAC 16 times) sent by
UDP to a broadcast address the user gives."""

from __future__ import annotations

import re
import socket

MAC_RE = re.compile(r"^([0-9a-fA-F]{2})([:-]?)([0-9a-fA-F]{2})(\2[0-9a-fA-F]{2}){4}$")


def magic_packet(mac: str) -> bytes:
    """The 102-byte magic packet for a MAC address (aa:bb:cc:dd:ee:ff, dashes or none)."""
    if not MAC_RE.match(mac):
        raise ValueError(f"{mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    raw = bytes.fromhex(re.sub(r"[:-]", "", mac))
    return b"\xff" * 6 + raw * 16


def send(mac: str, broadcast: str = "255.255.255.255", port: int = 9) -> None:
    """Send the magic packet once to broadcast:port."""
    packet = magic_packet(mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.sendto(packet, (broadcast, port))
