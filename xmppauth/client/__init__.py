"""The project's reference XMPP client (issue 10, item 7): TCP+STARTTLS, direct TLS or WebSocket, SASL2 with
Bind2 and FAST, the SASL2 tasks of this server; `python -m xmppauth.client --help`.

It imports the pure core (`xmppauth.proto`) and nothing of Django, `accounts` or `sessions_acl`, so it
checks a deployment from any machine with the package installed.
"""
