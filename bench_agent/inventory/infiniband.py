"""InfiniBand and RoCE ports, HCAs and GID tables, read from sysfs under the injected root.

The files are the kernel's (Linux Documentation/ABI/stable/sysfs-class-infiniband;
drivers/infiniband/core/sysfs.c writes them):

    <dev>/fw_ver, board_id, hca_type      the HCA (fw_ver_show, board_id "MT_0000000838")
    <dev>/ports/<n>/state                 "4: ACTIVE" (state_show: "%d: %s")
    <dev>/ports/<n>/phys_state            "5: LinkUp"
    <dev>/ports/<n>/rate                  "400 Gb/sec (4X NDR)"
    <dev>/ports/<n>/link_layer            "InfiniBand" or "Ethernet" (RoCE)
    <dev>/ports/<n>/counters/<name>       the port's PMA PortCounters, one decimal number,
                                          or "N/A (no PMA)" (show_pma_counter)
    <dev>/ports/<n>/gids/<i>              GID i as "%pI6": eight groups of four hex digits
    <dev>/ports/<n>/gid_attrs/types/<i>   "IB/RoCE v1" or "RoCE v2" (ib_cache_gid_type_str);
                                          reading an unused entry fails with EINVAL
    <dev>/ports/<n>/gid_attrs/ndevs/<i>   the netdev behind a RoCE GID ("eth0")

Two kinds of reader: the inventory's (``hcas``), which never raises (an unknown
fact is None), and the port health check's (``read_port``), which is strict: a
port whose state or a counter cannot be read or is garbage is a ParseError
naming the file, never a PASS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench_agent.core.errors import ParseError
from bench_agent.core.inventory import Hca
from bench_agent.core.sysfs import list_dir, read_line

IB_CLASS = "sys/class/infiniband"
SYSFS_ATTRIBUTE_MAX = 4096  # a sysfs show function fills one page at most
# state_show / phys_state_show: "%d: %s\n" ("7: Phy Test" holds a space).
_STATE_RE = re.compile(r"(\d+): (\S[^\n]*)")
_COUNTER_RE = re.compile(r"\d+")
# rate_show() writes "%d%s Gb/sec (%dX%s)": "400 Gb/sec (4X NDR)" or "2.5 Gb/sec (1X)".
_RATE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*Gb/sec")
NO_PMA = "N/A (no PMA)"
# An IPv4 address as a GID: the IPv4-mapped IPv6 address ::ffff:a.b.c.d (RFC 4291
# section 2.5.5.2), which is how RoCE v2 carries an IPv4 address (IBTA Annex A17).
_IPV4_MAPPED_RE = re.compile(r"0000:0000:0000:0000:0000:ffff:([0-9a-f]{4}):([0-9a-f]{4})")
_GID_RE = re.compile(r"[0-9a-f]{4}(?::[0-9a-f]{4}){7}")
ROCE_V2 = "RoCE v2"


def strict_text(root: Path, path: Path) -> str:
    """One sysfs attribute's text, stripped; ParseError naming the file otherwise."""
    shown = "/" + str(path.relative_to(root))
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            text = handle.read(SYSFS_ATTRIBUTE_MAX + 1)
    except OSError as exc:
        raise ParseError("sysfs", f"{shown}: {exc.strerror or exc}") from None
    if len(text) > SYSFS_ATTRIBUTE_MAX:
        raise ParseError("sysfs", f"{shown}: longer than a sysfs attribute "
                                  f"({SYSFS_ATTRIBUTE_MAX} bytes)")
    return text.strip()


def parse_ib_rate(text: str | None) -> int | None:
    """Bits/s of an IB port rate ("400 Gb/sec (4X NDR)" -> 4e11); None if unreadable."""
    match = _RATE_RE.match(text or "")
    # Decimal giga: IBTA rates are decimal (2.5, 5, 10, 14, 25, 50, 100 Gb/s per lane).
    return round(float(match.group(1)) * 1e9) if match else None


def _state(root: Path, path: Path) -> tuple[int, str]:
    text = strict_text(root, path)
    match = _STATE_RE.fullmatch(text)
    if match is None:
        raise ParseError("sysfs", f"/{path.relative_to(root)}: not '<number>: <name>'", text)
    return int(match.group(1)), match.group(2)


def port_dirs(root: Path) -> list[tuple[str, Path]]:
    """(device, port folder) of every port, by device name then port number."""
    out: list[tuple[str, Path]] = []
    base = root / IB_CLASS
    for device in list_dir(base):
        ports = [p for p in list_dir(base / device / "ports") if p.isdigit()]
        out += [(device, base / device / "ports" / p) for p in sorted(ports, key=int)]
    return out


@dataclass(frozen=True)
class PortReading:
    """One port as read at one moment (``at``: seconds on the reader's clock)."""

    device: str
    port: str
    state: str  # "4: ACTIVE"
    phys_state: str  # "5: LinkUp"
    rate: str
    rate_bits_per_second: int
    link_layer: str | None
    source: str  # /sys/class/infiniband/<dev>/ports/<n>
    at: float
    counters: dict[str, int] = field(default_factory=dict)
    # Counters the port does not offer, with why ("no such file", "N/A (no PMA)").
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.device}/{self.port}"

    @property
    def active(self) -> bool:
        return self.state.endswith(": ACTIVE")

    @property
    def link_up(self) -> bool:
        return self.phys_state.endswith(": LinkUp")


def read_port(root: Path, device: str, port_dir: Path, counters: Iterable[str],
              clock: Callable[[], float]) -> PortReading:
    """The port's state, rate and the named counters; ParseError for a bad file."""
    state_number, state = _state(root, port_dir / "state")
    phys_number, phys = _state(root, port_dir / "phys_state")
    rate_text = strict_text(root, port_dir / "rate")
    rate = parse_ib_rate(rate_text)
    if rate is None:
        raise ParseError("sysfs", f"/{(port_dir / 'rate').relative_to(root)}: not "
                                  "'<number> Gb/sec (...)'", rate_text)
    layer_file = port_dir / "link_layer"
    layer = strict_text(root, layer_file) if layer_file.exists() else None
    values: dict[str, int] = {}
    unavailable: dict[str, str] = {}
    for counter in counters:
        path = port_dir / "counters" / counter
        if not path.exists():
            unavailable[counter] = "no such file"
            continue
        text = strict_text(root, path)
        if text == NO_PMA:
            unavailable[counter] = text
        elif _COUNTER_RE.fullmatch(text):
            values[counter] = int(text)
        else:
            raise ParseError("sysfs", f"/{path.relative_to(root)}: not a counter", text)
    return PortReading(device=device, port=port_dir.name, state=f"{state_number}: {state}",
                       phys_state=f"{phys_number}: {phys}", rate=rate_text,
                       rate_bits_per_second=rate, link_layer=layer,
                       source=f"/{port_dir.relative_to(root)}", at=clock(),
                       counters=values, unavailable=unavailable)


# --- the GID table (RoCE) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GidEntry:
    index: int
    gid: str
    type: str | None  # "RoCE v2", "IB/RoCE v1"; None: unused or unreadable
    ndev: str | None

    @property
    def ipv4(self) -> str | None:
        """The IPv4 address of an IPv4-mapped GID ("192.168.100.10"), else None."""
        match = _IPV4_MAPPED_RE.fullmatch(self.gid)
        if match is None:
            return None
        value = int(match.group(1) + match.group(2), 16)
        return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def gid_table(port_dir: Path) -> list[GidEntry]:
    """The port's used GID entries (all-zero GIDs are empty slots), by index."""
    out = []
    names = [n for n in list_dir(port_dir / "gids") if n.isdigit()]
    for name in sorted(names, key=int):
        gid = (read_line(port_dir / "gids" / name) or "").lower()
        if not _GID_RE.fullmatch(gid) or set(gid) <= {"0", ":"}:
            continue
        out.append(GidEntry(int(name), gid, read_line(port_dir / "gid_attrs/types" / name),
                            read_line(port_dir / "gid_attrs/ndevs" / name)))
    return out


def pick_roce_gid(entries: Iterable[GidEntry]) -> GidEntry | None:
    """The GID perftest's -x should use on a RoCE port: RoCE v2 (routable over UDP,
    IBTA Annex A17) with an IPv4-mapped address, the lowest such index; None when
    the table has none. NVIDIA's RoCE guides pick it the same way from `show_gids`
    ("the RoCE v2 GID of the interface's IPv4 address")."""
    return next((e for e in entries if e.type == ROCE_V2 and e.ipv4 is not None), None)


def roce_gid_index(root: Path, device: str, port: int | str = 1) -> GidEntry | None:
    """The picked GID of ``device``'s port (None: no RoCE v2 IPv4 GID there)."""
    return pick_roce_gid(gid_table(root / IB_CLASS / device / "ports" / str(port)))


# --- the HCAs (inventory facts) -----------------------------------------------------


def _natural(name: str) -> tuple[str, int]:
    """mlx5_2 before mlx5_10."""
    match = re.fullmatch(r"(.*?)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def printable(text: str | None) -> str | None:
    """A sysfs string as a fact: printable ASCII of a sane length (firmware strings
    are), else unknown; a file of garbage is not a version to compare."""
    if text is None or not (text.isascii() and text.isprintable()) or len(text) > 64:
        return None
    return text


def hcas(root: Path) -> list[Hca]:
    """Every RDMA device's firmware version, board id (the PSID on Mellanox/NVIDIA
    adapters) and type, in natural order; an unreadable fact is None."""
    base = root / IB_CLASS
    return [Hca(name=name, fw_ver=printable(read_line(base / name / "fw_ver")),
                board_id=printable(read_line(base / name / "board_id")),
                hca_type=printable(read_line(base / name / "hca_type")))
            for name in sorted(list_dir(base), key=_natural)]
