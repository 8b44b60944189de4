"""RFC 4475 torture messages: parser verdicts and UA core responses, in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from signaling.sip.auth import AuthConfig
from signaling.sip.core import CoreConfig
from signaling.sip.errors import SipSyntaxError
from signaling.sip.message import SipRequest, SipResponse, multipart_parts, sdp_body
from signaling.sip.parser import parse_datagram
from tests.sip.rfc4475_verdicts import CALL, VERDICTS
from tests.sip.support import DATA, CoreHarness, options_probe, responses

# Each test runs with the C fast path of SIP parsing and with the Python reference alone.
pytestmark = pytest.mark.usefixtures("sip_parser")

CASES = DATA / "rfc4475"


def load(name: str) -> bytes:
    return (CASES / f"{name}.dat").read_bytes()


def test_every_message_has_a_verdict() -> None:
    names = {path.stem for path in CASES.glob("*.dat")}

    assert len(names) == 49
    assert names == set(VERDICTS)


def final_status(harness: CoreHarness, data: bytes) -> int | None:
    sent = responses(harness.feed(data))
    finals = [response.status for response in sent if response.status >= 200]
    if harness.offered():
        assert not finals
        return CALL
    assert len(finals) <= 1
    return finals[0] if finals else None


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_core_verdict(name: str) -> None:
    auth = AuthConfig(users={"alice": "secret"}, trusted_networks=["127.0.0.0/8"])
    config = CoreConfig(force_rport=True, auth=auth)
    harness = CoreHarness(config)

    status = final_status(harness, load(name))

    assert status == VERDICTS[name]


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_core_survives_and_answers_options(name: str) -> None:
    harness = CoreHarness()
    harness.feed(load(name))

    sent = responses(harness.feed(options_probe(5070, "probe")))

    assert [response.status for response in sent] == [200]


def test_bad_request_reason_names_problem() -> None:
    harness = CoreHarness()

    sent = responses(harness.feed(load("mcl01")))

    assert sent[0].status == 400
    assert "Content-Length" in sent[0].reason


def test_bext01_lists_unsupported_extensions() -> None:
    sent = responses(CoreHarness().feed(load("bext01")))

    assert sent[0].headers.get_list("Unsupported") == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]


def test_invut_reply_has_accept() -> None:
    sent = responses(CoreHarness().feed(load("invut")))
    final = next(response for response in sent if response.status == 415)

    assert "application/sdp" in final.headers.get_list("Accept")


def test_regaut01_challenges_with_digest() -> None:
    harness = CoreHarness(CoreConfig(auth=AuthConfig(users={"alice": "secret"})))

    sent = responses(harness.feed(load("regaut01")))
    challenges = sent[0].headers.raw("WWW-Authenticate")

    assert sent[0].status == 401
    assert [value.split()[0] for value in challenges] == ["Digest", "Digest"]
    assert "algorithm=SHA-256" in challenges[0]
    assert "algorithm=MD5" in challenges[1]


def test_badvers_answered_505() -> None:
    sent = responses(CoreHarness().feed(load("badvers")))

    assert [response.status for response in sent] == [505]
    assert sent[0].headers.get("Call-ID") == "badvers.31417@c.example.com"


def test_dblreq_uses_only_first_request() -> None:
    message = parse_datagram(load("dblreq"))

    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.body == b""


def test_mpart01_parts_are_split() -> None:
    message = parse_datagram(load("mpart01"))
    content_type = message.headers.get("Content-Type") or ""

    parts = multipart_parts(content_type, message.body)

    assert [part_type for part_type, _ in parts] == ["text/plain", "application/octet-stream"]
    assert parts[0][1] == b"Hello"
    assert sdp_body(content_type, message.body) is None


def test_unreason_keeps_utf8_reason() -> None:
    message = parse_datagram(load("unreason"))

    assert isinstance(message, SipResponse)
    assert message.status == 200
    assert "простое" in message.reason
    assert len(message.body) == 154


def test_noreason_has_empty_reason() -> None:
    message = parse_datagram(load("noreason"))

    assert isinstance(message, SipResponse)
    assert message.reason == ""


@pytest.mark.parametrize("name", ["scalarlg", "bigcode"])
def test_invalid_responses_raise(name: str) -> None:
    with pytest.raises(SipSyntaxError):
        parse_datagram(load(name))


def test_badbranch_is_not_rfc3261_branch() -> None:
    message = parse_datagram(load("badbranch"))

    assert message.parsed.top_via.branch == "z9hG4bK"
    assert not message.parsed.top_via.rfc3261_branch


def test_contact_params_belong_where_written() -> None:
    plain = parse_datagram(load("cparam01")).parsed.contact[0]
    bracketed = parse_datagram(load("cparam02")).parsed.contact[0]
    routed = parse_datagram(load("regescrt")).parsed.contact[0]

    assert "unknownparam" in plain.params
    assert bracketed.uri is not None and "unknownparam" in bracketed.uri.params
    assert routed.uri is not None
    assert routed.uri.headers == [("Route", "%3Csip:sip.example.com%3E")]


def test_wsinv_whitespace_parsed() -> None:
    info = parse_datagram(load("wsinv")).parsed

    assert info.to.tag == "1918181833n"
    assert info.from_.tag == "98asjd8"
    assert info.from_.display_name == 'J Rosenberg \\"'
    assert info.cseq.number == 9
    assert info.max_forwards == 68
    assert [via.branch for via in info.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert info.contact[0].params["q"] == "0.33"


def test_intmeth_method_and_uri() -> None:
    message = parse_datagram(load("intmeth"))

    assert isinstance(message, SipRequest)
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert message.request_uri is not None
    assert message.request_uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert message.parsed.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"


def test_inv2543_without_branch_or_tags() -> None:
    harness = CoreHarness()
    harness.feed(load("inv2543"))

    offered = harness.offered()

    assert len(offered) == 1
    assert offered[0].session.remote_sdp is not None


def test_data_dir_is_copied(tmp_path: Path) -> None:
    assert (CASES / "README.md").exists()
