"""Which TCP addresses a process listens on, read from /proc (Linux).

:func:`listening` maps the socket inodes a process holds (``/proc/<pid>/fd``)
to the LISTEN entries of ``/proc/net/tcp`` and ``/proc/net/tcp6``, so a test
can check that a process binds exactly the addresses it should.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

#: The TCP state number of a listening socket in /proc/net/tcp.
LISTEN = "0A"


def listening(pid: int) -> set[tuple[str, int]]:
    """``{(ip, port)}`` of the TCP sockets process ``pid`` is listening on."""
    inodes = _socket_inodes(pid)
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN and int(fields[9]) in inodes:
                found.add(_address(fields[1]))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _address(field: str) -> tuple[str, int]:
    """``0100007F:1F90`` -> ``("127.0.0.1", 8080)`` (the kernel writes each 32-bit word
    of the address in host byte order: little-endian here)."""
    hex_ip, hex_port = field.split(":")
    words = [bytes.fromhex(hex_ip[i:i + 8])[::-1] for i in range(0, len(hex_ip), 8)]
    return str(ipaddress.ip_address(b"".join(words))), int(hex_port, 16)
