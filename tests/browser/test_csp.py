"""Every dashboard page under the real Content-Security-Policy: no violation is reported anywhere."""

from __future__ import annotations

from typing import Any

import pytest

from backend.security import CONTENT_SECURITY_POLICY
from tests.browser.conftest import FakeWorker, PageWatch, csp_violations, wait_js

pytestmark = pytest.mark.browser

SCROLL_THROUGH = """async () => {
    const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    for (let y = 0; y < document.documentElement.scrollHeight; y += 300) { window.scrollTo(0, y); await frame(); }
    window.scrollTo(0, 0);
}"""


def visit(page: Any, watch: PageWatch, path: str, ready: str, status: int = 200) -> None:
    """Open `path` under the served CSP, wait for `ready` (a selector), draw every chart, and find no violation."""
    response = page.goto(path)
    assert response is not None and response.status == status, path
    assert response.headers.get("content-security-policy") == CONTENT_SECURITY_POLICY
    page.locator(ready).first.wait_for()
    page.evaluate(SCROLL_THROUGH)  # charts off screen are drawn (and style themselves) on approach
    page.wait_for_timeout(300)
    assert csp_violations(page) == [], path
    assert watch.csp == [], path


def test_every_page_runs_under_the_content_security_policy(page: Any, watch: PageWatch, worker: FakeWorker) -> None:
    watch.expect_failed_request("/no/such/page")  # the 404 page answers 404
    done = worker.submit("csp-masks", epochs=4, tags=["csp"])
    worker.complete(done, 4, with_masks=True, histograms=True)
    other = worker.submit("csp-other", epochs=4, tags=["csp"])
    worker.complete(other, 4, accuracy=0.9, sparsity=0.8)
    sweep = worker.client.post("/api/sweeps", json={"name": "csp-sweep", "base": {
        "name": "csp-sweep", "dataset": {"name": "digits"}, "training": {"epochs": 2}},
        "grid": {"training.lr": [0.05, 0.1]}}).json()
    worker.complete(sweep["runs"][0]["id"], 2)
    worker.heartbeat()

    visit(page, watch, "/", f"tr[data-run-id='{done}']")
    visit(page, watch, "/runs/new", "#f-training-lr")
    visit(page, watch, f"/runs/{done}", "#config-panel")
    page.locator("#mask-caption").filter(has_text="epoch 4").wait_for()
    page.locator("#chart-histogram").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-histogram')?.layout?.meta?.epoch === 4")
    wait_js(page, "() => document.getElementById('chart-mask')?.data !== undefined")
    assert csp_violations(page) == [] and watch.csp == []
    visit(page, watch, f"/compare?ids={done},{other}", "#compare-table")
    wait_js(page, "() => document.getElementById('chart-pareto')?.data !== undefined")
    visit(page, watch, "/sweeps", f"tr[data-sweep-id='{sweep['id']}']")
    visit(page, watch, f"/sweeps/{sweep['id']}", "#sweep-runs")
    visit(page, watch, "/workers", "#workers-table tbody tr")
    visit(page, watch, "/no/such/page", "h1", status=404)
    # The PNG export draws on a canvas from a data: URL (img-src allows it): no violation either.
    page.goto(f"/runs/{done}")
    page.locator("#chart-loss").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-loss')?.data !== undefined")
    page.locator("#chart-loss").hover()
    with page.expect_download():
        page.locator("#chart-loss .modebar-btn[data-title='Download as PNG']").click()
    assert csp_violations(page) == [] and watch.csp == []


def test_a_violation_would_be_caught(page: Any, watch: PageWatch) -> None:
    # The check above can fail: an inline script on a dashboard page is refused and reported both ways.
    page.goto("/workers")
    page.locator("h1").first.wait_for()
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
                  " document.body.append(s); }")
    wait_js(page, "() => window.__cspViolations.length > 0")
    assert page.evaluate("() => window.__ran") is None
    assert any("script-src" in v for v in csp_violations(page))
    wait_js(page, "() => true")  # let the console message arrive
    page.wait_for_timeout(200)
    assert watch.csp, "Chromium's 'Refused to execute inline script' console message was not seen"
    watch.csp.clear()  # expected here: the fixture would otherwise fail the test
    watch.errors.clear()
