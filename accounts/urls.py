"""The portal's URLs (namespace ``accounts``): sign-in at the site's root, the account's pages under
``account/``. Every page not listed in ``PUBLIC`` is behind :func:`accounts.views.guard.signed_in`
(tests/web/test_guard.py checks each one)."""

from __future__ import annotations

from django.urls import path

from .views import account, apppasswords, factors, reauth, signin, signup, webauthn

app_name = "accounts"

#: The pages a visitor reaches without being signed in (everything else needs a signed-in account
#: that passed its second factor).
PUBLIC = frozenset(
    {
        "home",
        "sign-in",
        "signin-verify",
        "signin-cancel",
        "signin-key-options",
        "signin-key-verify",
        "passkey-options",
        "passkey-verify",
        "sign-out",
        "sign-up",
    }
)

urlpatterns = [
    path("", signin.home, name="home"),
    path("signin/", signin.sign_in, name="sign-in"),
    path("signin/verify/", signin.second_factor, name="signin-verify"),
    path("signin/cancel/", signin.cancel, name="signin-cancel"),
    path("signin/key/options/", webauthn.signin_options, name="signin-key-options"),
    path("signin/key/verify/", webauthn.signin_verify, name="signin-key-verify"),
    path("signin/passkey/options/", webauthn.passkey_options, name="passkey-options"),
    path("signin/passkey/verify/", webauthn.passkey_verify, name="passkey-verify"),
    path("signout/", signin.sign_out, name="sign-out"),
    path("signup/", signup.sign_up, name="sign-up"),  # a 404 unless XMPP_WEB_SIGNUP
    path("account/reauth/", reauth.reauth, name="reauth"),
    path("account/reauth/key/options/", webauthn.reauth_options, name="reauth-key-options"),
    path("account/reauth/key/verify/", webauthn.reauth_verify, name="reauth-key-verify"),
    path("account/security/", factors.security, name="security"),
    path("account/security/totp/add/", factors.totp_add, name="totp-add"),
    path("account/security/totp/confirm/", factors.totp_confirm, name="totp-confirm"),
    path("account/security/totp/remove/", factors.factor_remove, {"factor": "totp"}, name="totp-remove"),
    path("account/security/recovery/", factors.recovery_generate, name="recovery-generate"),
    path(
        "account/security/recovery/remove/",
        factors.factor_remove,
        {"factor": "recovery"},
        name="recovery-remove",
    ),
    path("account/security/keys/add/", webauthn.key_add, name="key-add"),
    path("account/security/keys/add/options/", webauthn.key_add_options, name="key-add-options"),
    path("account/security/keys/add/verify/", webauthn.key_add_verify, name="key-add-verify"),
    path("account/security/keys/<int:pk>/rename/", factors.key_rename, name="key-rename"),
    path("account/security/keys/<int:pk>/remove/", factors.key_remove, name="key-remove"),
    path("account/app-passwords/", apppasswords.app_passwords_list, name="app-passwords"),
    path("account/app-passwords/new/", apppasswords.app_password_create, name="app-password-create"),
    path(
        "account/app-passwords/<int:pk>/revoke/",
        apppasswords.app_password_revoke,
        name="app-password-revoke",
    ),
    path("account/password/", account.password_change, name="password"),
    path("account/policy/", account.policy, name="policy"),
]
