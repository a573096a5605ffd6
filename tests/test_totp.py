"""TOTP second factors (XEP-0400, issue 10): the RFC 6238 code, the window, replays (within one
process and between processes), throttling, sealed secrets and their key, the otpauth:// URI, the
django-otp device contract, and the ``totp`` and ``mfa`` management commands."""

from __future__ import annotations

import base64
import logging
import stat
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_otp import devices_for_user

from accounts import secretbox, totp
from accounts.models import TotpDevice, User
from accounts.secretbox import FactorKeyError, UnsealError
from accounts.signals import factor_changed
from tests.races import AT_ONCE, VENDORS, fresh_database, in_threads

NOW = 1_800_000_000.0  # a fixed instant; its step is 60_000_000
RFC_KEY = b"12345678901234567890"  # RFC 6238 Appendix B, SHA-1


@pytest.fixture(autouse=True)
def factor_key(settings: Any, tmp_path: Path) -> Path:
    """Each test's own key file (made on first use), never the data directory's."""
    settings.XMPP_FACTOR_KEY = ""
    settings.XMPP_FACTOR_KEY_FILE = tmp_path / "keys" / "factor.key"
    settings.XMPP_TOTP_THROTTLE_FACTOR = 1
    return Path(settings.XMPP_FACTOR_KEY_FILE)


@pytest.fixture
def announced() -> Iterator[list[dict[str, Any]]]:
    """What factor_changed said, in order."""
    heard: list[dict[str, Any]] = []

    def listen(sender: object, **kwargs: Any) -> None:
        heard.append({key: kwargs[key] for key in ("user", "kind", "action", "actor")})

    factor_changed.connect(listen, dispatch_uid="test_totp.listen")
    yield heard
    factor_changed.disconnect(dispatch_uid="test_totp.listen")


def secret_of(device: TotpDevice) -> bytes:
    return secretbox.unseal(device.encrypted_key)


def code_at(device: TotpDevice, when: float) -> str:
    return totp.totp_code(secret_of(device), totp.time_step(when))


def stored(device: TotpDevice) -> TotpDevice:
    return TotpDevice.objects.get(pk=device.pk)


def wrong_code(device: TotpDevice, when: float) -> str:
    return "000000" if code_at(device, when) != "000000" else "111111"


def enrolled(user: User) -> TotpDevice:
    device, _uri = totp.enrol(user, "phone")
    return device


# ------------------------------------------------------------------------------------ RFC 6238 code
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_it_computes_the_rfc_6238_appendix_b_sha1_codes(when: int, expected: str) -> None:
    assert totp.totp_code(RFC_KEY, totp.time_step(when), digits=8) == expected


def test_a_six_digit_code_is_the_last_six_digits_zero_padded() -> None:
    assert totp.totp_code(RFC_KEY, totp.time_step(59)) == "287082"  # RFC 4226 Appendix D, count 1
    assert totp.totp_code(RFC_KEY, totp.time_step(1111111109)) == "081804"
    assert totp.time_step(29.999) == 0
    assert totp.time_step(30) == 1


# --------------------------------------------------------------------------------------- the window
@pytest.mark.parametrize("drift", [-30, 0, 30])
def test_it_accepts_the_current_code_and_one_step_of_drift_either_side(alice: User, drift: int) -> None:
    device = enrolled(alice)

    check = totp.verify_totp(alice.pk, code_at(device, NOW + drift), now=NOW)

    assert check == totp.TotpCheck(True, "", totp.time_step(NOW + drift))
    assert stored(device).last_t == totp.time_step(NOW + drift)


@pytest.mark.parametrize("drift", [-60, 60])
def test_it_refuses_a_code_two_steps_away(alice: User, drift: int) -> None:
    device = enrolled(alice)

    check = totp.verify_totp(alice.pk, code_at(device, NOW + drift), now=NOW)

    assert (check.ok, check.text, check.reason, check.step) == (False, "wrong code", "incorrect_code", None)
    assert stored(device).last_t == -1


def test_it_checks_every_confirmed_device_of_the_account(alice: User) -> None:
    enrolled(alice)
    second = enrolled(alice)

    assert totp.verify_totp(alice.pk, code_at(second, NOW), now=NOW).ok


@pytest.mark.parametrize(
    "mangle",
    [
        lambda code: f" {code}",
        lambda code: f"{code}\n",
        lambda code: code[:5],
        lambda code: f"{code}0",
        lambda code: code.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"}),  # fullwidth
    ],
    ids=["leading-space", "trailing-newline", "five-digits", "seven-digits", "fullwidth-digits"],
)
def test_it_takes_exactly_six_ascii_digits_and_counts_anything_else_as_wrong(
    alice: User, mangle: Any
) -> None:
    device = enrolled(alice)

    check = totp.verify_totp(alice.pk, mangle(code_at(device, NOW)), now=NOW)

    assert (check.ok, check.text) == (False, "wrong code")
    assert (stored(device).last_t, stored(device).throttling_failure_count) == (-1, 1)


def test_an_account_without_a_confirmed_authenticator_is_told_so(alice: User) -> None:
    device, _uri = totp.start_setup(alice)  # being set up: no factor yet

    check = totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW)

    assert (check.ok, check.text, check.reason) == (False, "no confirmed authenticator app", "no_device")
    assert stored(device).last_t == -1


# ------------------------------------------------------------------------------------------ replays
def test_it_refuses_a_code_used_again_in_the_same_step(alice: User) -> None:
    device = enrolled(alice)
    code = code_at(device, NOW)
    assert totp.verify_totp(alice.pk, code, now=NOW).ok

    again = totp.verify_totp(alice.pk, code, now=NOW + 5)

    assert (again.ok, again.text) == (False, "this code was already used: wait for the next one")
    assert stored(device).throttling_failure_count == 0  # a used code guesses nothing
    assert totp.verify_totp(alice.pk, code_at(device, NOW + 30), now=NOW + 30).ok  # the next one works


def test_it_refuses_an_older_step_after_a_newer_one(alice: User) -> None:
    device = enrolled(alice)
    assert totp.verify_totp(alice.pk, code_at(device, NOW + 30), now=NOW).ok  # the phone runs ahead

    older = totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW)

    assert (older.ok, older.reason) == (False, "code_used")
    assert stored(device).last_t == totp.time_step(NOW + 30)


def test_writes_from_a_stale_device_neither_undo_an_accepted_step_nor_lose_a_count(alice: User) -> None:
    device = enrolled(alice)
    stale = stored(device)
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).ok

    other_stale = stored(device)
    stale.name = "old phone"
    stale.save()
    stale.throttle_increment()
    other_stale.throttle_increment()  # two processes counting a wrong code each: both count

    now = stored(device)
    assert (now.name, now.throttling_failure_count, now.last_t) == ("old phone", 2, totp.time_step(NOW))


def test_a_step_another_process_accepted_after_this_one_read_the_device_is_refused(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One interleaving, replayed: this check has read the device (last_t -1) and matched the code
    when another process accepts the same step."""
    device = enrolled(alice)
    matching_steps = totp._matching_steps

    def accepted_meanwhile(device: TotpDevice, code: str, step: int) -> list[int]:
        steps = matching_steps(device, code, step)
        TotpDevice.objects.filter(pk=device.pk).update(last_t=step)  # the other process's claim
        return steps

    monkeypatch.setattr(totp, "_matching_steps", accepted_meanwhile)
    check = totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW)

    assert (check.ok, check.reason) == (False, "code_used")


@pytest.fixture(params=VENDORS)
def database(request: pytest.FixtureRequest, tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A fresh, migrated database that every thread opens (tests/races.py); yields its vendor."""
    with fresh_database(request.param, tmp_path, django_db_blocker) as vendor:
        yield vendor


def test_of_several_processes_checking_the_same_code_at_once_exactly_one_wins(database: str) -> None:
    alice = User.objects.create(username="alice")
    device = enrolled(alice)
    for round_ in range(4):  # a race is a matter of luck: a few steps, AT_ONCE checks each
        when = NOW + 30 * round_
        code = code_at(device, when)

        def check(_: int, code: str = code, when: float = when) -> totp.TotpCheck:
            return totp.verify_totp(alice.pk, code, now=when)

        results = in_threads(AT_ONCE, check)

        reasons = [check.reason for check in results]
        assert reasons.count("") == 1  # exactly one wins; the others lost the race or the turn
        assert set(reasons) - {""} <= {"code_used", "throttled"}, reasons
        assert stored(device).last_t == totp.time_step(when)


# --------------------------------------------------------------------------------------- throttling
def test_wrong_codes_sent_at_once_get_one_turn_between_them(database: str) -> None:
    """Guessing in parallel is no faster than one guess after another: of AT_ONCE wrong codes checked
    at the same time, one is checked (and counted) and the others are told to wait."""
    alice = User.objects.create(username="alice")
    device = enrolled(alice)
    near = {code_at(device, NOW + 30 * drift) for drift in (-1, 0, 1)}
    wrong = [code for code in (f"{n:06d}" for n in range(100, 200)) if code not in near][:AT_ONCE]

    def guess(n: int) -> totp.TotpCheck:
        return totp.verify_totp(alice.pk, wrong[n], now=NOW)

    reasons = [check.reason for check in in_threads(AT_ONCE, guess)]
    assert reasons.count("incorrect_code") == 1, reasons
    assert reasons.count("throttled") == AT_ONCE - 1, reasons
    assert stored(device).throttling_failure_count == 1


def test_a_wrong_code_makes_the_next_check_wait_and_the_wait_is_stored(alice: User, settings: Any) -> None:
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    device = enrolled(alice)
    assert totp.verify_totp(alice.pk, wrong_code(device, NOW), now=NOW).reason == "incorrect_code"

    right_but_throttled = totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW)

    assert (right_but_throttled.ok, right_but_throttled.text) == (
        False,
        "too many wrong codes: try again in 60 s",
    )
    fresh = stored(device)  # as another process would read it
    assert fresh.verify_is_allowed()[0] is False
    assert not fresh.verify_token(code_at(device, NOW))
    assert fresh.last_t == -1  # the code was not looked at, so not used up


def test_a_client_the_account_knows_is_not_held_by_the_wait_and_its_wrong_codes_do_not_count(
    alice: User, settings: Any
) -> None:
    """Someone with the password guessing codes from a new client makes the wait grow; the owner's
    client, which logged in before, is not held by it (throttled=False: sasl2_tasks asks the guessing
    limits' known client) and its own typo does not lengthen the wait for the others."""
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    device = enrolled(alice)
    assert totp.verify_totp(alice.pk, wrong_code(device, NOW), now=NOW).reason == "incorrect_code"
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).reason == "throttled"
    assert (
        totp.verify_totp(alice.pk, wrong_code(device, NOW), now=NOW, throttled=False).reason
        == "incorrect_code"
    )
    assert stored(device).throttling_failure_count == 1
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW, throttled=False).ok
    assert stored(device).throttling_failure_count == 0  # a right code ends the wait for everyone


def test_the_wait_doubles_with_each_wrong_code_and_a_right_one_clears_it(alice: User, settings: Any) -> None:
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    device = enrolled(alice)
    for _ in range(2):
        assert totp.verify_totp(alice.pk, wrong_code(device, NOW), now=NOW).reason == "incorrect_code"
        TotpDevice.objects.update(throttling_failure_timestamp=timezone.now() - timedelta(seconds=300))
    TotpDevice.objects.update(throttling_failure_timestamp=timezone.now())
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).text.endswith("try again in 120 s")

    TotpDevice.objects.update(throttling_failure_timestamp=timezone.now() - timedelta(seconds=121))
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).ok

    assert (stored(device).throttling_failure_count, stored(device).throttling_failure_timestamp) == (0, None)


def test_the_wait_stops_growing_at_its_maximum(alice: User, settings: Any) -> None:
    """Someone with the password must not be able to keep the owner's codes failing ever longer."""
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    settings.XMPP_TOTP_THROTTLE_MAX_SECONDS = 300
    device = enrolled(alice)
    for _ in range(6):
        TotpDevice.objects.update(throttling_failure_timestamp=timezone.now() - timedelta(days=1))
        assert totp.verify_totp(alice.pk, wrong_code(device, NOW), now=NOW).reason == "incorrect_code"
    assert stored(device).throttling_failure_count == 3  # 60 · 2^2 = 240 s, the largest wait not over 300
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).text.endswith("try again in 240 s")


def test_a_recovery_code_ends_the_authenticator_apps_wait(alice: User, settings: Any) -> None:
    from accounts import recovery

    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    device = enrolled(alice)
    codes = recovery.generate(alice, count=2)
    assert totp.verify_totp(alice.pk, wrong_code(device, NOW), now=NOW).reason == "incorrect_code"
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).reason == "throttled"  # control
    assert recovery.use_code(alice.pk, codes[0]).ok
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).ok


# ----------------------------------------------------------------------------- secrets and their key
def test_the_secret_is_stored_sealed(alice: User) -> None:
    device, uri = totp.start_setup(alice)
    secret_b32 = parse_qs(urlsplit(uri).query)["secret"][0]
    raw = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {TotpDevice._meta.db_table} WHERE id = %s", [device.pk])
        row = cursor.fetchone()

    assert len(raw) == 20
    dump = b"".join(
        bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode() for value in row
    )
    assert raw not in dump
    assert secret_b32.encode() not in dump
    assert secretbox.unseal(stored(device).encrypted_key) == raw


def test_a_secret_sealed_with_another_key_does_not_open_and_says_which_key(
    alice: User, settings: Any, caplog: Any
) -> None:
    device = enrolled(alice)
    code = code_at(device, NOW)
    settings.XMPP_FACTOR_KEY = Fernet.generate_key().decode()

    with pytest.raises(UnsealError, match="XMPP_FACTOR_KEY: it was sealed with another key"):
        secretbox.unseal(device.encrypted_key)
    with caplog.at_level(logging.ERROR, logger="accounts.totp"):
        check = totp.verify_totp(alice.pk, code, now=NOW)
    assert (check.ok, check.reason) == (False, "unavailable")
    assert "sealed with another key" in caplog.text
    assert stored(device).throttling_failure_count == 0


def test_it_names_the_setting_when_the_configured_key_is_invalid(settings: Any) -> None:
    settings.XMPP_FACTOR_KEY = "not-a-key-at-all"

    with pytest.raises(FactorKeyError, match="XMPP_FACTOR_KEY is not a Fernet key") as raised:
        secretbox.seal(b"secret")
    assert "not-a-key-at-all" not in str(raised.value)


def test_it_names_the_file_when_the_key_file_is_missing_and_makes_none_to_unseal(factor_key: Path) -> None:
    sealed = secretbox.seal(b"secret")
    factor_key.unlink()

    with pytest.raises(FactorKeyError, match="XMPP_FACTOR_KEY_FILE") as raised:
        secretbox.unseal(sealed)
    assert str(factor_key) in str(raised.value)
    assert "enrolled again" in str(raised.value)
    assert not factor_key.exists()


def test_it_names_the_file_when_it_holds_no_key(factor_key: Path) -> None:
    factor_key.parent.mkdir(parents=True)
    factor_key.write_text("hunter2\n")

    with pytest.raises(FactorKeyError, match="does not hold a Fernet key") as raised:
        secretbox.seal(b"secret")
    assert str(factor_key) in str(raised.value)
    assert factor_key.read_text() == "hunter2\n"


def test_the_key_file_is_made_once_with_mode_0600_and_reused(factor_key: Path) -> None:
    assert not factor_key.exists()
    first = secretbox.seal(b"one")
    key = factor_key.read_bytes()

    second = secretbox.seal(b"two")

    assert stat.S_IMODE(factor_key.stat().st_mode) == 0o600
    assert factor_key.read_bytes() == key
    assert Fernet(key.strip()).decrypt(first) == b"one"
    assert (secretbox.unseal(first), secretbox.unseal(second)) == (b"one", b"two")
    assert sorted(path.name for path in factor_key.parent.iterdir()) == ["factor.key"]  # no temporary left


def test_a_key_file_made_meanwhile_by_another_process_is_never_replaced(
    factor_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = Fernet.generate_key()
    factor_key.parent.mkdir(parents=True)
    factor_key.write_bytes(theirs)
    monkeypatch.setattr(Path, "exists", lambda self: False)  # it was missing when this process looked

    sealed = secretbox.seal(b"secret")

    assert factor_key.read_bytes() == theirs
    assert Fernet(theirs).decrypt(sealed) == b"secret"
    assert sorted(path.name for path in factor_key.parent.iterdir()) == ["factor.key"]


def test_neither_key_nor_secret_is_logged(alice: User, factor_key: Path, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG):
        device, uri = totp.start_setup(alice)
        totp.confirm_setup(alice, code_at(device, NOW), now=NOW)
        totp.verify_totp(alice.pk, "123456", now=NOW)

    assert "made a new key" in caplog.text  # the log was listened to
    assert parse_qs(urlsplit(uri).query)["secret"][0] not in caplog.text
    assert factor_key.read_text().strip() not in caplog.text


# ------------------------------------------------------------------------------ set-up and the URI
def test_the_otpauth_uri_names_issuer_and_account_and_holds_the_secret(alice: User, settings: Any) -> None:
    settings.XMPP_DOMAIN = "example.org"
    settings.XMPP_TOTP_ISSUER = "Example Chat"

    device, uri = totp.start_setup(alice)

    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "otpauth",
        "totp",
        "/Example%20Chat:alice%40example.org",
    )
    query = parse_qs(parts.query)
    assert {key: value for key, value in query.items() if key != "secret"} == {
        "issuer": ["Example Chat"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    assert "=" not in query["secret"][0]
    assert "issuer=Example%20Chat&" in uri  # %20, not '+', which some apps show as is
    assert base64.b32decode(query["secret"][0]) == secret_of(device)  # 20 bytes: 32 characters, no padding
    assert totp.provisioning_uri(device) == uri


def test_the_issuer_is_the_domain_by_default(alice: User) -> None:
    _device, uri = totp.start_setup(alice)

    assert uri.startswith("otpauth://totp/localhost:alice%40localhost?")
    assert "&issuer=localhost&" in uri


def test_a_set_up_is_confirmed_by_a_current_code_and_announced(alice: User, announced: list[Any]) -> None:
    earlier, _ = totp.start_setup(alice)
    device, _ = totp.start_setup(alice)  # replaces the earlier one
    assert list(TotpDevice.objects.values_list("pk", flat=True)) == [device.pk]
    assert totp.confirm_setup(alice, code_at(device, NOW + 90), now=NOW).reason == "incorrect_code"
    assert not stored(device).confirmed
    stored(device).throttle_reset()

    check = totp.confirm_setup(alice, code_at(device, NOW), now=NOW)

    assert check.ok
    assert list(totp.confirmed_devices(alice)) == [device]
    assert announced == [{"user": alice, "kind": "totp", "action": "enrolled", "actor": ""}]
    assert totp.verify_totp(alice.pk, code_at(device, NOW), now=NOW).reason == "code_used"  # used to confirm
    assert totp.confirm_setup(alice, code_at(device, NOW + 30), now=NOW).text == (
        "no authenticator app is being set up: start the set-up again"
    )
    assert earlier.pk != device.pk


def test_removing_every_factor_counts_them_and_announces_it(
    alice: User, bob: User, announced: list[Any]
) -> None:
    enrolled(alice)
    totp.start_setup(alice)
    enrolled(bob)

    assert totp.remove_all(alice, actor="support") == 2
    assert totp.remove_all(alice, actor="support") == 0

    assert announced[-1] == {"user": alice, "kind": "totp", "action": "removed", "actor": "support"}
    assert [entry["action"] for entry in announced] == ["enrolled", "enrolled", "removed"]  # one removal
    assert list(TotpDevice.objects.values_list("user__username", flat=True)) == ["bob"]


# ------------------------------------------------------------------------------- django-otp contract
def test_the_device_keeps_django_otps_contract(alice: User) -> None:
    device = enrolled(alice)
    code = totp.totp_code(secret_of(device), totp.time_step(timezone.now().timestamp()))

    assert [d.pk for d in devices_for_user(alice)] == [device.pk]
    assert device.verify_token(code) is True
    assert device.verify_token(code) is False  # once
    assert device.persistent_id == f"accounts.totpdevice/{device.pk}"


# ------------------------------------------------------------------------------- management commands
def test_totp_add_enrols_a_confirmed_device_and_prints_uri_and_qr_once(
    alice: User, announced: list[Any]
) -> None:
    out = _run("totp", "add", "alice", "--device-name", "phone")

    device = TotpDevice.objects.get()
    assert (device.name, device.confirmed) == ("phone", True)
    assert totp.provisioning_uri(device) in out
    assert "\u2588" in out  # the QR code, in block characters
    assert "shown only now" in out
    assert announced == [
        {"user": alice, "kind": "totp", "action": "enrolled", "actor": "the operator (manage.py totp add)"}
    ]


def test_mfa_list_shows_each_factor(alice: User) -> None:
    enrolled(alice)
    totp.start_setup(alice, "tablet")

    out = _run("mfa", "list", "alice@localhost")

    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("totp  phone  confirmed  created 20")
    assert lines[1].startswith("totp  tablet  not confirmed (being set up)  created 20")


def test_mfa_list_says_when_there_are_none(bob: User) -> None:
    assert _run("mfa", "list", "bob") == "bob has no second factors\n"


def test_mfa_reset_removes_every_factor(alice: User, announced: list[Any]) -> None:
    enrolled(alice)
    enrolled(alice)

    out = _run("mfa", "reset", "alice")

    assert out == "removed 2 second factor(s) of alice\n"
    assert not TotpDevice.objects.exists()
    assert announced[-1]["actor"] == "manage.py mfa reset"


@pytest.mark.parametrize("command", [["totp", "add"], ["mfa", "list"], ["mfa", "reset"]])
def test_the_commands_refuse_an_unknown_account(db: None, command: list[str]) -> None:
    with pytest.raises(CommandError, match="no account 'nobody'"):
        call_command(*command, "nobody")


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_enrolling_and_removing_a_factor_is_in_the_security_log(alice: User) -> None:
    from sessions_acl.models import AuthEvent

    totp.enrol(alice, actor="an operator")
    totp.remove_all(alice, actor="an operator")
    events = list(
        AuthEvent.objects.filter(user=alice, kind=AuthEvent.Kind.FACTOR_CHANGED)
        .order_by("pk")
        .values_list("detail", "actor")
    )
    assert events == [("totp enrolled", "an operator"), ("totp removed", "an operator")]
