"""A small authoritative DNS server on loopback for tests of name resolution.

It answers UDP queries from a fixed table of records, so tests of SRV and
A/AAAA lookups never reach a real DNS server. It counts the queries it got,
by name and type, so a test can check what was asked.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = Mapping[tuple[str, str], Sequence[str]]


class DnsServer:
    """A DNS server on 127.0.0.1 that answers from `records`: (name, type) -> rdata texts.

    Names not in the table get NXDOMAIN; a known name without records of
    the asked type gets an empty answer. Use it as a context manager.
    """

    def __init__(self, records: Records) -> None:
        self.records = {
            (name.lower().rstrip("."), kind): list(data) for (name, kind), data in records.items()
        }
        self.queries: Counter[tuple[str, str]] = Counter()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self._counted = threading.Condition()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def wait_for(self, name: str, kind: str, count: int, timeout_s: float) -> bool:
        """Block until `count` queries for (`name`, `kind`) came; False after `timeout_s`."""
        with self._counted:
            return self._counted.wait_for(lambda: self.queries[(name, kind)] >= count, timeout_s)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                data, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            self._socket.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        with self._counted:
            self.queries[(name, kind)] += 1
            self._counted.notify_all()
        if not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        data = self.records.get((name, kind), [])
        if data:
            rrset = dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, kind, data)
            response.answer.append(rrset)
        return response
