"""Recovery codes (issue 10): their form and entropy, storage as hashes only, single use (within one
process and between processes), normalisation, a new set voiding the old, throttling, the count of
codes left, the security log, the django-otp device contract, and the ``mfa`` commands."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_otp import devices_for_user

from accounts import recovery, totp
from accounts.models import RecoveryCode, RecoveryCodes, TotpDevice, User
from accounts.signals import factor_changed
from tests.races import AT_ONCE, VENDORS, fresh_database, in_threads

SHOWN = re.compile(r"[2-9a-km-np-z]{4}(-[2-9a-km-np-z]{4}){3}")  # no 0, 1, l, o


@pytest.fixture(autouse=True)
def throttle(settings: Any, tmp_path: Path) -> None:
    settings.XMPP_TOTP_THROTTLE_FACTOR = 1
    settings.XMPP_FACTOR_KEY = ""
    settings.XMPP_FACTOR_KEY_FILE = tmp_path / "factor.key"  # for the TOTP device of the mfa tests


@pytest.fixture
def announced() -> Iterator[list[dict[str, Any]]]:
    """What factor_changed said, in order."""
    heard: list[dict[str, Any]] = []

    def listen(sender: object, **kwargs: Any) -> None:
        heard.append({key: kwargs[key] for key in ("user", "kind", "action", "actor")} | {"sender": sender})

    factor_changed.connect(listen, dispatch_uid="test_recovery.listen")
    yield heard
    factor_changed.disconnect(dispatch_uid="test_recovery.listen")


def device_of(user: User) -> RecoveryCodes:
    return RecoveryCodes.objects.get(user=user)


def wrong_code() -> str:
    return "2222-2222-2222-2222"  # one chance in 2^80 of being one of them


def unwait(user: User) -> None:
    """As if the wait after the last wrong code had passed."""
    RecoveryCodes.objects.filter(user=user).update(
        throttling_failure_timestamp=timezone.now() - timedelta(days=1)
    )


# ------------------------------------------------------------------------------------- the codes
def test_a_code_is_sixteen_characters_of_the_alphabet_in_four_groups(alice: User) -> None:
    codes = recovery.generate(alice)

    assert len(codes) == len(set(codes)) == 10
    assert all(SHOWN.fullmatch(code) for code in codes), codes
    assert len(recovery.ALPHABET) == len(set(recovery.ALPHABET)) == 32  # 5 bits a character
    assert not set("01lo") & set(recovery.ALPHABET)


def test_a_code_is_eighty_random_bits_from_secrets(alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    values = iter([0, 2**80 - 1, int("10" * 40, 2)])

    def randbits(bits: int) -> int:
        asked.append(bits)
        return next(values)

    monkeypatch.setattr(secrets, "randbits", randbits)
    codes = recovery.generate(alice, count=3)

    assert asked == [80, 80, 80]
    # 5 bits a character, lowest first: 0b01010 is "c", 0b10101 is "p"; the top bit makes the last "p"
    assert sorted(codes) == ["2222-2222-2222-2222", "cpcp-cpcp-cpcp-cpcp", "zzzz-zzzz-zzzz-zzzz"]


def test_codes_are_spread_over_the_whole_alphabet(alice: User) -> None:
    codes = recovery.generate(alice, count=100)

    assert set("".join(codes).replace("-", "")) == set(recovery.ALPHABET)


def test_a_code_is_stored_only_as_the_sha256_of_its_normalised_text(alice: User) -> None:
    codes = recovery.generate(alice, count=3)
    with connection.cursor() as cursor:
        rows: list[Any] = []
        for model in (RecoveryCode, RecoveryCodes):
            cursor.execute(f"SELECT * FROM {model._meta.db_table}")
            rows += cursor.fetchall()
    dump = "|".join(str(value) for row in rows for value in row).lower()

    for code in codes:
        compact = code.replace("-", "")
        assert compact not in dump
        for group in code.split("-"):
            assert code.replace(group, "") not in dump
        assert hashlib.sha256(compact.encode()).hexdigest() in dump
    assert sorted(RecoveryCode.objects.values_list("digest", flat=True)) == sorted(
        hashlib.sha256(code.replace("-", "").encode()).hexdigest() for code in codes
    )


# ----------------------------------------------------------------------------------- single use
def test_a_code_works_once(alice: User) -> None:
    code, _other = recovery.generate(alice, count=2)

    first = recovery.use_code(alice.pk, code)
    again = recovery.use_code(alice.pk, code)

    assert first == recovery.CodeCheck(True, "", 1, "")
    assert again == recovery.CodeCheck(False, "this recovery code was already used", 1, "code_used")
    assert RecoveryCode.objects.filter(used__isnull=False).count() == 1
    assert device_of(alice).throttling_failure_count == 0  # a used code guesses nothing


def test_a_code_used_by_another_process_after_this_one_read_it_is_refused(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One interleaving, replayed: this check has found the code unused when another process uses it."""
    [code] = recovery.generate(alice, count=1)
    use = recovery._use

    def used_meanwhile(row: RecoveryCode, now: Any) -> bool:
        RecoveryCode.objects.filter(pk=row.pk).update(used=timezone.now())  # the other process
        return use(row, now)

    monkeypatch.setattr(recovery, "_use", used_meanwhile)
    check = recovery.use_code(alice.pk, code)

    assert (check.ok, check.reason) == (False, "code_used")


@pytest.fixture(params=VENDORS)
def database(request: pytest.FixtureRequest, tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A fresh, migrated database that every thread opens (tests/races.py); yields its vendor."""
    with fresh_database(request.param, tmp_path, django_db_blocker) as vendor:
        yield vendor


def test_of_several_processes_using_the_same_code_at_once_exactly_one_wins(database: str) -> None:
    alice = User.objects.create(username="alice")
    codes = recovery.generate(alice, count=4)
    for number, code in enumerate(codes):  # a race is a matter of luck: a few codes, AT_ONCE uses each

        def use(_: int, code: str = code) -> recovery.CodeCheck:
            return recovery.use_code(alice.pk, code)

        results = in_threads(AT_ONCE, use)

        reasons = [check.reason for check in results]
        assert reasons.count("") == 1  # exactly one wins; the others lost the race or the turn
        assert set(reasons) - {""} <= {"code_used", "throttled"}, reasons
        assert [check.remaining for check in results if check.ok] == [len(codes) - number - 1]
    assert recovery.remaining_codes(alice) == 0


# -------------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    "mangle",
    [
        str.upper,
        lambda code: code.replace("-", ""),
        lambda code: code.replace("-", " "),
        lambda code: f"  {code.upper().replace('-', '')}\n",
        lambda code: f"{code[:7]}\t{code[7:]}",
        lambda code: code.replace("-", "--"),
    ],
    ids=["upper-case", "no-dashes", "spaces", "padded", "tab-inside", "double-dashes"],
)
def test_it_accepts_a_code_in_any_case_with_or_without_spaces_and_dashes(alice: User, mangle: Any) -> None:
    [code] = recovery.generate(alice, count=1)

    assert recovery.use_code(alice.pk, mangle(code)).ok


@pytest.mark.parametrize(
    "mangle",
    [
        lambda code: code[:-1] + ("2" if code[-1] != "2" else "3"),  # another character of the alphabet
        lambda code: code[:-1] + "0",  # not in the alphabet, nor mapped to anything
        lambda code: code[:-1] + "l",
        lambda code: code[:-1],
        lambda code: f"{code}2",
        lambda code: code.replace("-", "_"),
        lambda code: code.translate({ord(c): ord(c) + 0xFEE0 for c in recovery.ALPHABET}),  # fullwidth
        lambda code: code.replace("k", "\u212a"),  # the Kelvin sign, whose lower case is "k"
    ],
    ids=["other-char", "zero", "ell", "short", "long", "underscores", "fullwidth", "kelvin-sign"],
)
def test_anything_else_wrong_matches_nothing_and_counts_as_a_wrong_code(
    alice: User, mangle: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    k, m = recovery.ALPHABET.index("k"), recovery.ALPHABET.index("m")
    monkeypatch.setattr(
        secrets, "randbits", lambda bits: sum(k << 10 * i | m << 10 * i + 5 for i in range(8))
    )
    [code] = recovery.generate(alice, count=1)
    assert code == "kmkm-kmkm-kmkm-kmkm"

    check = recovery.use_code(alice.pk, mangle(code))

    assert check == recovery.CodeCheck(False, "wrong recovery code", 1, "incorrect_code")
    assert device_of(alice).throttling_failure_count == 1
    unwait(alice)
    assert recovery.use_code(alice.pk, code).ok  # not used up


# ------------------------------------------------------------------------------------ the sets
def test_a_new_set_voids_the_old_one(alice: User, announced: list[Any]) -> None:
    old = recovery.generate(alice, count=3)
    device = device_of(alice)

    new = recovery.generate(alice, count=2, actor="support")

    assert not set(old) & set(new)
    assert recovery.remaining_codes(alice) == 2
    check = recovery.use_code(alice.pk, old[0])
    assert (check.ok, check.reason) == (False, "incorrect_code")
    unwait(alice)
    assert recovery.use_code(alice.pk, new[0]).ok
    assert device_of(alice).pk == device.pk  # one device per account, which keeps its throttling
    assert [(entry["kind"], entry["action"], entry["actor"]) for entry in announced] == [
        ("recovery", "generated", ""),
        ("recovery", "generated", "support"),
    ]
    assert announced[0]["sender"] is RecoveryCodes


def test_a_set_has_at_least_one_code(alice: User) -> None:
    with pytest.raises(ValueError, match="at least one"):
        recovery.generate(alice, count=0)
    assert not RecoveryCodes.objects.exists()


def test_each_account_has_its_own_codes(alice: User, bob: User) -> None:
    [alices] = recovery.generate(alice, count=1)
    recovery.generate(bob, count=1)

    assert recovery.use_code(bob.pk, alices).reason == "incorrect_code"
    assert recovery.use_code(alice.pk, alices).ok


def test_remaining_counts_down_to_zero_and_then_there_are_no_codes(alice: User) -> None:
    codes = recovery.generate(alice, count=3)
    assert recovery.remaining_codes(alice) == 3

    left = [recovery.use_code(alice.pk, code).remaining for code in codes]

    assert left == [2, 1, 0]
    assert recovery.remaining_codes(alice) == 0
    assert recovery.use_code(alice.pk, codes[-1]) == recovery.CodeCheck(
        False, "this recovery code was already used", 0, "code_used"
    )
    assert recovery.use_code(alice.pk, wrong_code()) == recovery.CodeCheck(
        False, "no recovery codes", 0, "no_codes"
    )
    assert device_of(alice).throttling_failure_count == 0  # nothing left to guess


def test_an_account_without_codes_is_told_so(alice: User) -> None:
    assert recovery.use_code(alice.pk, wrong_code()) == recovery.CodeCheck(
        False, "no recovery codes", 0, "no_codes"
    )
    assert recovery.remaining_codes(alice) == 0


def test_removing_the_set_counts_its_codes_and_announces_it_once(
    alice: User, bob: User, announced: list[Any]
) -> None:
    [code, _, _] = recovery.generate(alice, count=3)
    recovery.generate(bob, count=1)
    assert recovery.use_code(alice.pk, code).ok

    assert recovery.remove(alice, actor="support") == 3  # used or not
    assert recovery.remove(alice, actor="support") == 0

    assert [entry["action"] for entry in announced] == ["generated", "generated", "removed"]
    assert announced[-1] | {"sender": None} == {
        "user": alice,
        "kind": "recovery",
        "action": "removed",
        "actor": "support",
        "sender": None,
    }
    assert recovery.use_code(alice.pk, code).reason == "no_codes"
    assert list(RecoveryCodes.objects.values_list("user__username", flat=True)) == ["bob"]
    assert RecoveryCode.objects.count() == 1


def test_generating_and_removing_codes_is_in_the_security_log(alice: User) -> None:
    from sessions_acl.models import AuthEvent

    recovery.generate(alice, actor="an operator")
    recovery.remove(alice, actor="an operator")

    events = list(
        AuthEvent.objects.filter(user=alice, kind=AuthEvent.Kind.FACTOR_CHANGED)
        .order_by("pk")
        .values_list("detail", "actor")
    )
    assert events == [("recovery generated", "an operator"), ("recovery removed", "an operator")]


# ------------------------------------------------------------------------------------ throttling
def test_a_wrong_code_makes_the_next_check_wait_and_the_wait_is_stored(alice: User, settings: Any) -> None:
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    [code, _] = recovery.generate(alice, count=2)
    assert recovery.use_code(alice.pk, wrong_code()).reason == "incorrect_code"

    right_but_throttled = recovery.use_code(alice.pk, code)

    assert right_but_throttled == recovery.CodeCheck(
        False, "too many wrong codes: try again in 60 s", 2, "throttled"
    )
    fresh = device_of(alice)  # as another process would read it
    assert fresh.verify_is_allowed()[0] is False
    assert not fresh.verify_token(code)
    assert recovery.remaining_codes(alice) == 2  # the code was not looked at, so not used up


def test_a_client_the_account_knows_is_not_held_by_the_wait_and_its_wrong_codes_do_not_count(
    alice: User, settings: Any
) -> None:
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    [code, _] = recovery.generate(alice, count=2)
    assert recovery.use_code(alice.pk, wrong_code()).reason == "incorrect_code"
    assert recovery.use_code(alice.pk, code).reason == "throttled"
    assert recovery.use_code(alice.pk, wrong_code(), throttled=False).reason == "incorrect_code"
    assert device_of(alice).throttling_failure_count == 1
    assert recovery.use_code(alice.pk, code, throttled=False).ok
    assert recovery.remaining_codes(alice) == 1


def test_the_wait_doubles_with_each_wrong_code_and_a_right_one_clears_it(alice: User, settings: Any) -> None:
    settings.XMPP_TOTP_THROTTLE_FACTOR = 60
    [code] = recovery.generate(alice, count=1)
    for _ in range(2):
        assert recovery.use_code(alice.pk, wrong_code()).reason == "incorrect_code"
        unwait(alice)
    RecoveryCodes.objects.update(throttling_failure_timestamp=timezone.now())
    assert recovery.use_code(alice.pk, code).text == "too many wrong codes: try again in 120 s"

    unwait(alice)
    assert recovery.use_code(alice.pk, code).ok

    fresh = device_of(alice)
    assert (fresh.throttling_failure_count, fresh.throttling_failure_timestamp) == (0, None)


def test_wrong_codes_counted_by_two_processes_both_count(alice: User) -> None:
    recovery.generate(alice, count=1)
    one, other = device_of(alice), device_of(alice)

    one.throttle_increment()
    other.throttle_increment()

    assert device_of(alice).throttling_failure_count == 2


# ------------------------------------------------------------------------------- django-otp contract
def test_the_device_keeps_django_otps_contract(alice: User) -> None:
    [code] = recovery.generate(alice, count=1)
    device = device_of(alice)

    assert [d.pk for d in devices_for_user(alice) if isinstance(d, RecoveryCodes)] == [device.pk]
    assert device.confirmed
    assert device.verify_token(code.upper()) is True
    assert device.verify_token(code) is False  # once
    assert device.persistent_id == f"accounts.recoverycodes/{device.pk}"


# ------------------------------------------------------------------------------- management commands
def test_mfa_recovery_prints_a_new_set_once_with_a_note(alice: User, announced: list[Any]) -> None:
    [old] = recovery.generate(alice, count=1)

    out = _run("mfa", "recovery", "alice", "--count", "3")

    codes = SHOWN.findall(out)
    printed = [line.strip() for line in out.splitlines() if SHOWN.fullmatch(line.strip())]
    assert len(codes) == len(printed) == 3
    assert out.startswith("3 recovery codes for alice:\n")
    assert "shown only now" in out
    assert "store safely" in out
    assert "no longer work" in out
    assert recovery.use_code(alice.pk, old).reason == "incorrect_code"
    unwait(alice)
    assert all(recovery.use_code(alice.pk, code).ok for code in printed)
    assert announced[-1]["actor"] == "manage.py mfa recovery"


def test_mfa_recovery_makes_ten_codes_by_default(alice: User) -> None:
    out = _run("mfa", "recovery", "alice@localhost")

    assert len([line for line in out.splitlines() if SHOWN.fullmatch(line.strip())]) == 10
    assert recovery.remaining_codes(alice) == 10


@pytest.mark.parametrize("count", ["0", "101"])
def test_mfa_recovery_refuses_a_count_out_of_range(alice: User, count: str) -> None:
    with pytest.raises(CommandError, match="--count must be 1 to 100"):
        _run("mfa", "recovery", "alice", "--count", count)
    assert not RecoveryCodes.objects.exists()


def test_mfa_list_shows_the_recovery_codes_as_one_factor(alice: User) -> None:
    totp.enrol(alice, "phone")
    [code, _, _] = recovery.generate(alice, count=3)
    recovery.use_code(alice.pk, code)

    lines = _run("mfa", "list", "alice").splitlines()

    assert len(lines) == 2
    assert lines[0].startswith("totp  phone  confirmed  created 20")
    assert lines[1].startswith("recovery  recovery codes  2 of 3 unused  generated 20")


def test_mfa_list_shows_recovery_codes_alone(bob: User) -> None:
    recovery.generate(bob, count=1)

    assert _run("mfa", "list", "bob").startswith("recovery  recovery codes  1 of 1 unused  generated ")


def test_mfa_reset_removes_the_recovery_codes_too_and_logs_it(alice: User) -> None:
    from sessions_acl.models import AuthEvent

    totp.enrol(alice, "phone")
    [code] = recovery.generate(alice, count=1)

    out = _run("mfa", "reset", "alice")

    assert out == "removed 2 second factor(s) of alice\n"
    assert not TotpDevice.objects.exists()
    assert not RecoveryCodes.objects.exists()
    assert recovery.use_code(alice.pk, code).reason == "no_codes"
    logged = AuthEvent.objects.filter(user=alice, actor="manage.py mfa reset").order_by("pk")
    assert list(logged.values_list("detail", flat=True)) == ["totp removed", "recovery removed"]


def test_mfa_reset_of_recovery_codes_alone(alice: User) -> None:
    recovery.generate(alice, count=1)

    assert _run("mfa", "reset", "alice") == "removed 1 second factor(s) of alice\n"


def test_mfa_recovery_refuses_an_unknown_account(db: None) -> None:
    with pytest.raises(CommandError, match="no account 'nobody'"):
        call_command("mfa", "recovery", "nobody")


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
