"""SIP: message syntax, transactions, dialogs, digest authentication and transports.

Applications use `signaling.sip.endpoint` (`SipEndpoint`, `SipConfig`,
`InboundCall`, `CallHandler`). The protocol cores below it have no I/O:
`parser` and `message` (wire format), `transaction` (RFC 3261 §17),
`dialog` and `core` (the UAS), `auth`, `registrar` and `registration`.
`docs/sip.md` describes behaviour, limits and the threat model.
"""
