"""What a UAS must do with each RFC 4475 torture message, by RFC 4475 section.

A verdict is a final status code, CALL (the INVITE reaches the application,
which the tests then reject with 486), or None (a response or datagram that
is dropped without reply).
"""

from __future__ import annotations

CALL = -1

VERDICTS: dict[str, int | None] = {
    # 3.1.1 valid messages: parse and process.
    "wsinv": 481,  # To has a tag, so it is a mid-dialog INVITE for an unknown dialog
    "intmeth": 501,  # unknown method, not a syntax error
    "esc01": CALL,
    "escnull": 401,  # REGISTER: parsed, then challenged
    "esc02": 501,  # the method RE%47IST%45R is not REGISTER
    "lwsdisp": 200,
    "longreq": CALL,
    "dblreq": 401,  # only the REGISTER that Content-Length covers is processed
    "semiuri": 200,
    "transports": 200,
    "mpart01": 405,  # MESSAGE is known but not served
    "unreason": None,  # responses without a client transaction are dropped
    "noreason": None,
    # 3.1.2 invalid messages: 400.
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "baddn": 400,
    "mismatch01": 400,
    "mismatch02": 400,
    # Invalid but commonly tolerated; our verdicts:
    "escruri": CALL,  # headers in the Request-URI are ignored
    "baddate": CALL,  # Date is never interpreted
    "regbadct": 400,  # addr-spec Contact with '?' is ambiguous, so it is rejected
    "badaspec": 200,  # spaces inside <> are tolerated
    "badvers": 505,
    "scalarlg": None,  # invalid responses are dropped
    "bigcode": None,
    # 3.2 transaction layer
    "badbranch": 200,  # the bare magic cookie selects RFC 2543 matching
    # 3.3 application layer
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": 416,
    "bext01": 420,
    "invut": 415,
    "regaut01": 401,
    "multi01": 400,
    "mcl01": 400,
    "bcast": None,
    "zeromf": 200,
    "cparam01": 401,
    "cparam02": 401,
    "regescrt": 401,
    "sdp01": 406,
    # 3.4 backward compatibility
    "inv2543": CALL,
}

# Over TCP, clerr's Content-Length runs past the end of the stream: the
# connection closes without a reply (as RFC 4475 describes for clerr). inv2543 has no
# Content-Length, which a stream needs (RFC 3261 §18.3): 400, then close.
TCP_OVERRIDES: dict[str, int | None] = {"clerr": None, "inv2543": 400}
