"""The portal with the keyboard alone (issue 11, item 4): sign in, reach a page from the navigation and
act on it with Tab, typing and Enter; the focused element is always visibly marked."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User

pytestmark = pytest.mark.usefixtures("transactional_db")


def tab_to(page: Page, predicate: str, limit: int = 40) -> dict[str, Any]:
    """Press Tab until the focused element matches ``predicate`` (a JS expression over ``el``); what it
    is. Fails if it never comes: the element cannot be reached with the keyboard."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        found = page.evaluate(
            f"""() => {{ const el = document.activeElement;
                 const style = getComputedStyle(el);
                 return {{ hit: Boolean({predicate}), tag: el.tagName, text: (el.innerText || el.name || '').trim(),
                           outline: style.outlineStyle, shadow: style.boxShadow }}; }}"""
        )
        if found["hit"]:
            return dict(found)
    raise AssertionError(f"Tab never reached an element where {predicate}")


def assert_focus_visible(found: dict[str, Any]) -> None:
    assert found["outline"] != "none" or found["shadow"] not in ("", "none"), found


def test_sign_in_and_move_around_with_the_keyboard_alone(page: Page, live_server: Any, alice: User) -> None:
    page.goto(f"{live_server.url}/")
    skip = tab_to(page, "el.tagName === 'A' && /skip/i.test(el.innerText)")  # the first stop skips the header
    assert_focus_visible(skip)
    username = tab_to(page, "el.name === 'username'")
    assert_focus_visible(username)
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("wonderland")
    page.keyboard.press("Enter")  # the form is sent from the password field
    expect(page.get_by_text("Signed in as alice@localhost")).to_be_visible()

    link = tab_to(page, "el.tagName === 'A' && el.innerText.trim() === 'App passwords'")
    assert_focus_visible(link)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="App passwords", exact=True)).to_be_visible()
    button = tab_to(page, "/new app password|create/i.test(el.innerText || '')")
    assert_focus_visible(button)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    sign_out = tab_to(page, "el.tagName === 'BUTTON' && el.innerText.trim() === 'Sign out'")
    assert_focus_visible(sign_out)
    page.keyboard.press("Enter")
    expect(page.get_by_text("You are signed out.")).to_be_visible()
