"""XEP-0400 Multi-Factor Authentication with TOTP: the ``TOTP`` task, a second factor inside SASL2.

Offered after a password login of an account with a confirmed authenticator app (XEP-0400 §3: never
to an account that has not enrolled; never after a FAST token or an app password, which
``sessions_acl.login.authorize`` decides). It is one of the second-factor alternatives of a login
(``group="second-factor"``). The exchange, in ``urn:xmpp:mfa:0`` (the encoding is ours: XEP-0400
predates ``<task-data/>``; docs/protocol.md):

- the client picks the task; ``<next task='TOTP'><totp xmlns='urn:xmpp:mfa:0'>123456</totp></next>``
  carries the code at once (XEP-0400: "the response (or initial-response) SHALL be a TOTP code");
- otherwise the server sends an empty ``<totp xmlns='urn:xmpp:mfa:0'/>`` and the client answers
  ``<task-data><totp xmlns='urn:xmpp:mfa:0'>123456</totp></task-data>``.

A code is six digits (SHA-1, 30 s, one step of drift either side) and is accepted once per time step
on any process; wrong codes are throttled per account (``accounts.totp``). A wrong code fails the
task, and with it the authentication (XEP-0388 §2.7), with ``not-authorized`` and a text that says why.
"""

from __future__ import annotations

from xmppauth import sasl2_tasks, services
from xmppauth.proto import ns

TOTP = "TOTP"

sasl2_tasks.register_code_factor(
    name=TOTP,
    kind="totp",
    element=ns.qname(ns.MFA, "totp"),
    check=services.verify_totp,
    order=10,
    max_length=16,
)
