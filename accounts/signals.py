"""What the accounts app announces to the apps above it: a password change, once, when it is stored,
a second factor added or removed, and each web sign-in, passed or refused.

The accounts app knows nothing of sessions, tokens or the security log: the sessions and access
control app listens (from its ``AppConfig.ready``), writes the security log and ends the account's
other sessions and FAST tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.dispatch import Signal


@dataclass(frozen=True, kw_only=True)
class PasswordChange:
    """How a password was changed: by whom (for the security log, "" if nobody is named), from
    which session (which goes on), and whether the other sessions go on too."""

    actor: str = ""
    except_session: int | None = None
    keep_other_sessions: bool = False


#: Sent by ``User.save()`` once a new password (Django's hash and the SCRAM keys, set by
#: ``User.set_password``) has replaced an earlier one, inside the transaction that stores it;
#: arguments ``user`` and ``change`` (a :class:`PasswordChange`). A first password is no change.
password_changed = Signal()

#: Sent when a second factor of an account is added or removed, inside the transaction that stores
#: the change; arguments ``user``, ``kind`` (the factor type: "totp" or "recovery"), ``action``
#: ("enrolled": a confirmed factor the account logs in with from now on; "generated": a new set of
#: recovery codes, the old set void; "removed": every factor of that kind is gone) and ``actor`` (who
#: did it, for the security log; "" names nobody, i.e. the account itself).
#: An authenticator being set up and not yet confirmed is no factor and is not announced.
factor_changed = Signal()

#: Sent by the web portal (accounts/views) for each sign-in and each refused attempt of an existing
#: account (and each refused re-authentication); arguments ``user``, ``ok`` (signed in, or refused),
#: ``detail`` (which step and factor, "web sign-in: password+totp"; never a secret) and ``address``
#: (the client's).
web_signin = Signal()

#: Sent by the web portal when an account's policy for XMPP password logins
#: (``User.xmpp_password_login``) changes, inside the transaction that stores it; arguments ``user``,
#: ``old`` and ``new`` (:class:`accounts.models.PasswordLogin` values) and ``actor`` (who did it, for
#: the security log).
policy_changed = Signal()

#: Sent when an operator changes who an account is or what it may do (the admin site), inside the
#: transaction that stores it; arguments ``user``, ``changes`` (field name -> (old, new), among
#: ``username``, ``is_active``, ``is_staff``, ``is_superuser``; for a new account, every one of them with
#: ``None`` as old), ``created`` and ``actor``. The apps above write the security log and end the
#: account's sessions when it is disabled, renamed (its JID changes) or loses staff rights.
account_changed = Signal()
