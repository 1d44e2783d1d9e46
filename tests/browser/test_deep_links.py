"""Deep links to runs and sweeps whose id cannot exist: the page says there is no such run or sweep, naming the id as
the address has it, and asks the API nothing about it (ids are whole numbers from 1 to 2147483647)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import PageWatch

pytestmark = pytest.mark.browser

IMPOSSIBLE = ["0", "00", "2147483648", "99999999999999999999", "abc", "-1"]


def api_requests(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if "/api/runs/" in r.url or "/api/sweeps/" in r.url else None)
    return seen


@pytest.mark.parametrize("kind", ["run", "sweep"])
@pytest.mark.parametrize("typed", IMPOSSIBLE)
def test_an_id_out_of_range_is_said_not_to_exist(page: Any, kind: str, typed: str) -> None:
    # It showed the validator's "Input should be greater than or equal to 1", under "Run 100000000000000000000".
    asked = api_requests(page)
    page.goto(f"/{kind}s/{typed}")
    page.locator(".notice.error", has_text=f"There is no {kind} {typed}.").wait_for()
    assert page.get_by_role("heading", level=1).inner_text() == f"{kind.capitalize()} {typed}"
    text = page.locator("#app").inner_text()
    assert "Input should" not in text and "1000000000000000" not in text.replace(typed, ""), text
    assert not asked, f"the API was asked about an id that cannot exist: {asked}"


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_an_unknown_id_in_range_is_said_not_to_exist(page: Any, watch: PageWatch, kind: str) -> None:
    watch.expect_failed_request(f"/api/{kind}s/2147483647")
    page.goto(f"/{kind}s/2147483647")
    page.locator(".notice.error", has_text=f"There is no {kind} 2147483647.").wait_for()
    assert page.get_by_role("heading", level=1).inner_text() == f"{kind.capitalize()} 2147483647"
