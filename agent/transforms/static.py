"""Static enrichment: --field, --label, --service-name and host metadata.

Everything here is computed once at start-up into a *defaults tree* (nested
dicts shaped like a document) and merged into each document with
``merge_defaults``: a value the document already has wins, because what the
log line says is more specific than what the agent was configured with.

Host metadata (``HostInfo``) is gathered once by ``gather``: no system call
per line. Gathering never raises and never waits on DNS.
"""

from __future__ import annotations

import ipaddress
import math
import platform
import socket
from dataclasses import dataclass
from typing import Any

from agent.transforms import schema

_MISSING = object()


@dataclass(frozen=True)
class HostInfo:
    """Facts about this machine, for ``host.*``."""

    name: str
    ips: tuple[str, ...] = ()
    os_name: str = ""
    os_version: str = ""
    architecture: str = ""
    os_kernel: str = ""
    os_type: str = ""

    def fields(self) -> dict[str, Any]:
        """The ``host`` object (empty facts left out)."""
        host: dict[str, Any] = {"name": self.name}
        if self.ips:
            host["ip"] = list(self.ips)
        if self.architecture:
            host["architecture"] = self.architecture
        os_fields = {key: value for key, value in (("name", self.os_name), ("version", self.os_version),
                                                   ("kernel", self.os_kernel), ("type", self.os_type))
                     if value}
        if os_fields:
            host["os"] = os_fields
        return host


def gather(host_name: str | None) -> HostInfo:
    """This machine's name, addresses, OS and architecture. Never raises.

    Inside a container the OS is the image's (``/etc/os-release`` of the
    container) and the addresses are the container's.
    """
    name = host_name or _safe(socket.gethostname, "")
    os_release: dict[str, str] = _safe(platform.freedesktop_os_release, {})
    uname = _safe(platform.uname, None)
    system = uname.system if uname else ""
    mac_version = _safe(lambda: platform.mac_ver()[0], "") if system == "Darwin" else ""
    return HostInfo(
        name=name,
        ips=tuple(_safe(_local_addresses, [])),
        os_name=os_release.get("NAME", "") or ("macOS" if mac_version else system),
        os_version=os_release.get("VERSION_ID", "") or mac_version,
        architecture=uname.machine if uname else "",
        os_kernel=uname.release if uname else "",
        os_type=_OS_TYPES.get(system, system.lower()),  # ECS host.os.type values
    )


_OS_TYPES = {"Linux": "linux", "Darwin": "macos", "Windows": "windows"}


def _safe(function: Any, fallback: Any) -> Any:
    try:
        return function()
    except Exception:  # host facts are best effort: never stop the agent for them
        return fallback


def _local_addresses() -> list[str]:
    """Non-loopback, non-link-local addresses of this machine.

    Linux: every interface's IPv4 address (``SIOCGIFADDR``) and the IPv6
    addresses of /proc/net/if_inet6. Elsewhere, or when that finds nothing,
    the source addresses the kernel would route from (a UDP ``connect`` sends
    no packet and resolves no name).
    """
    found: list[str] = []
    try:
        import fcntl
        import struct
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _, interface in socket.if_nameindex():
                try:
                    answer = fcntl.ioctl(probe.fileno(), 0x8915,  # SIOCGIFADDR
                                         struct.pack("256s", interface.encode()[:15]))
                except OSError:
                    continue
                found.append(socket.inet_ntoa(answer[20:24]))
    except (ImportError, OSError, AttributeError):
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for row in table:
                raw = row.split()[0]
                found.append(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.connect((target, 9))
                    found.append(probe.getsockname()[0])
            except OSError:
                pass
    kept: list[str] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            continue
        if str(address) not in kept:
            kept.append(str(address))
    return kept


def convert(name: str, raw: str) -> Any:
    """``raw`` typed for the field ``name`` (long, double, ip checked). ValueError says why."""
    kind = schema.field_type(name)
    if kind == schema.LONG:
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError(f"{name} is a long field: {raw!r} is not an integer") from None
    if kind == schema.DOUBLE:
        try:
            number = float(raw.strip())
        except ValueError:
            raise ValueError(f"{name} is a double field: {raw!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{name} is a double field: {raw!r} is not a finite number")
        return number
    if kind == schema.IP:
        try:
            return str(ipaddress.ip_address(raw.strip()))
        except ValueError:
            raise ValueError(f"{name} is an ip field: {raw!r} is not an IPv4/IPv6 address") from None
    if kind == schema.DATE:
        raise ValueError(f"{name} is set by the agent")
    return raw


def put(tree: dict[str, Any], name: str, value: Any) -> None:
    """Set the dotted ``name`` in a defaults tree under construction."""
    parts = name.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """A new tree: ``top``'s values win over ``base``'s (used while building, never per line)."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = overlay(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return out


class HostMerge:
    """``host`` of a document merged with the host metadata, fast in the usual case.

    Enrichment sets ``host: {"name": <this host>}`` on nearly every document;
    then the precomputed full object is placed as it is (shared, read-only).
    """

    def __init__(self, host: dict[str, Any]) -> None:
        self.full = host
        self.name = host.get("name")

    def merge(self, doc: dict[str, Any]) -> None:
        current = doc.get("host")
        if current is None:
            doc["host"] = self.full
        elif type(current) is dict:
            if len(current) == 1 and current.get("name") == self.name:
                doc["host"] = self.full
            else:
                doc["host"] = _merged(current, self.full)


def merge_defaults(doc: dict[str, Any], tree: dict[str, Any]) -> None:
    """Fill ``doc`` from ``tree`` where the document has no value (None counts as none).

    ``doc``'s top level is changed in place; nested dicts are replaced by
    merged copies, never changed, because they may be shared with the
    parser's record; subtrees of ``tree`` are placed as they are (shared,
    read-only by contract).
    """
    for key, value in tree.items():
        current = doc.get(key)
        if current is None:
            doc[key] = value
        elif type(current) is dict and type(value) is dict:
            doc[key] = _merged(current, value)


def _merged(current: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(current)
    for key, value in defaults.items():
        have = out.get(key)
        if have is None:
            out[key] = value
        elif type(have) is dict and type(value) is dict:
            out[key] = _merged(have, value)
    return out


def build_tree(fields: tuple[tuple[str, str], ...], labels: tuple[tuple[str, str], ...],
               service_name: str | None, host: HostInfo | None) -> dict[str, Any]:
    """The defaults tree of the static settings (validated before)."""
    tree: dict[str, Any] = {}
    if host is not None:
        tree["host"] = host.fields()
    for name, raw in fields:
        put(tree, name, convert(name, raw))
    if service_name:
        put(tree, "service.name", service_name)
    for key, value in labels:
        put(tree, "labels." + key, value)
    return tree

