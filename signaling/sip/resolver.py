"""Finding the address to send a request to for a SIP URI whose host is a name (RFC 3263).

A trunk is usually configured by name, such as `sip:trunk.example.net`, and
the provider publishes where its proxies listen in DNS. The rules followed
here are RFC 3263 §4 without NAPTR:

- a host that is an IP address is used as it is, on the URI's port or 5060;
- a name with an explicit port is looked up as A and AAAA records;
- a name without a port is first looked up as SRV records
  (`_sip._udp.NAME` or `_sip._tcp.NAME`, from the URI's transport). These
  are tried in priority order and by weight within a priority (RFC 2782).
  Without SRV records, the name's A and AAAA records are used on port 5060.

The Request-URI keeps the name; only the datagram or connection goes to the
address found. Addresses come from the DNS servers in `nameservers`, or from
the system's resolver configuration when it is empty. A name that DNS does
not know is looked up in the hosts file (/etc/hosts), so `localhost` and
names pinned there work.

NOTE: NAPTR records are not read, so a provider that publishes only NAPTR
records without the SRV records they point to cannot be found by name.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from signaling.sip.routing import is_ip

logger = logging.getLogger("sip.resolver")

DEFAULT_PORT = 5060
DEFAULT_TIMEOUT_S = 3.0


class ResolveError(Exception):
    """Raised when no address is found for a SIP host name."""


@dataclass(frozen=True, slots=True)
class Destination:
    """One address to send to: transport, IP address and port."""

    transport: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class _Service:
    priority: int
    weight: int
    port: int
    target: str


def order_services(services: Sequence[_Service], rng: random.Random) -> list[_Service]:
    """Return SRV records in the order to try them: by priority, then weighted at random."""
    ordered: list[_Service] = []
    for priority in sorted({service.priority for service in services}):
        group = [service for service in services if service.priority == priority]
        while group:
            total = sum(service.weight for service in group)
            if total == 0:
                chosen = group[0]
            else:
                pick = rng.uniform(0, total)
                running = 0
                chosen = group[-1]
                for service in group:
                    running += service.weight
                    if running >= pick:
                        chosen = service
                        break
            ordered.append(chosen)
            group.remove(chosen)
    return ordered


class SipResolver:
    """Resolves SIP hosts to destinations with DNS (SRV, A, AAAA) and the system's hosts file."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        port: int = 53,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        rng: random.Random | None = None,
        hosts_path: Path = Path("/etc/hosts"),
    ) -> None:
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = list(nameservers)
            self._resolver.port = port
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout_s
        self._rng = rng or random.Random()
        self._hosts_path = hosts_path

    async def resolve(self, host: str, port: int | None, transport: str) -> list[Destination]:
        """Return the destinations for `host`, most preferred first.

        `port` is the URI's port or None. Raise `ResolveError` when there is
        none, with the name and the reason in the message.
        """
        transport = transport.lower()
        if is_ip(host):
            return [Destination(transport, host, port or DEFAULT_PORT)]
        if port is None:
            services = await self._services(host, transport)
            if services:
                found: list[Destination] = []
                for service in services:
                    for address in await self._addresses(service.target):
                        found.append(Destination(transport, address, service.port))
                if found:
                    return found
                raise ResolveError(f"no address for the SRV targets of {host}")
        addresses = await self._addresses(host)
        if not addresses:
            raise ResolveError(f"no address for {host}: the name is unknown or has no A/AAAA")
        return [Destination(transport, address, port or DEFAULT_PORT) for address in addresses]

    async def _services(self, host: str, transport: str) -> list[_Service]:
        name = f"_sip._{'tcp' if transport in ('tcp', 'tls') else 'udp'}.{host}"
        answer = await self._query(name, dns.rdatatype.SRV)
        services = [
            _Service(record.priority, record.weight, record.port, record.target.to_text(True))
            for record in answer
            if record.target.to_text(True) != "."
        ]
        return order_services(services, self._rng)

    async def _addresses(self, host: str) -> list[str]:
        addresses: list[str] = []
        for kind in (dns.rdatatype.A, dns.rdatatype.AAAA):
            addresses += [record.address for record in await self._query(host, kind)]
        if addresses:
            return addresses
        return self._hosts_file(host)

    async def _query(self, name: str, kind: dns.rdatatype.RdataType) -> list[Any]:
        try:
            answer = await self._resolver.resolve(name, kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        except dns.exception.Timeout:
            logger.warning("DNS query for a %s record of %s timed out", kind.name, name)
            return []
        return list(answer)

    def _hosts_file(self, host: str) -> list[str]:
        try:
            text = self._hosts_path.read_text("utf-8", errors="replace")
        except OSError:
            return []
        key = host.lower().rstrip(".")
        addresses: list[str] = []
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2 or not is_ip(fields[0]):
                continue
            names = [name.lower() for name in fields[1:]]
            if key in names and fields[0] not in addresses:
                addresses.append(fields[0])
        return addresses
