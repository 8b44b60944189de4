"""SIP: message syntax, transactions, dialogs, digest authentication and transports."""
