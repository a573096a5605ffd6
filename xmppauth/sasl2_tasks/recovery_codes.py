"""Recovery codes as a SASL2 task (``X-RECOVERY``, namespace ``urn:xmppauth:recovery:0``): the way in
when the phone with the authenticator app is gone.

Not an XEP: the task is ours, specified in docs/protocol/recovery-task.md. Offered, as one of the
second-factor alternatives (``group="second-factor"``), after a password login of an account that
has unused recovery codes; never after a FAST token or an app password. One round trip:

- ``<next task='X-RECOVERY'><code xmlns='urn:xmppauth:recovery:0'>k7m2-x9qp-4tzd-wb3c</code></next>``;
- or ``<next task='X-RECOVERY'/>``, an empty ``<code/>`` from the server, and the code in ``<task-data/>``.

Each code works once, on any process (``accounts.recovery``); wrong codes are throttled per account.
A failure fails the authentication with ``not-authorized`` and a text that says why.
"""

from __future__ import annotations

from xmppauth import sasl2_tasks, services
from xmppauth.proto import ns

RECOVERY = "X-RECOVERY"

sasl2_tasks.register_code_factor(
    name=RECOVERY,
    kind="recovery",
    element=ns.qname(ns.RECOVERY, "code"),
    check=services.use_recovery_code,
    order=20,
)
