"""A real API on a free port, a fake worker that reports through the worker endpoints, and headless Chromium pages."""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from backend.app import create_app
from prunescope import maskcodec, services
from prunescope.config import Settings
from prunescope.contract.worker_api import LEASE_HEADER
from tests.conftest import missing_dependency

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WORKER_TOKEN = "t"
API_TOKEN = "api-secret"
LENET = (("fc1.weight", (300, 784)), ("fc2.weight", (100, 300)), ("fc3.weight", (10, 100)))


def serve(settings: Settings) -> Iterator[str]:
    """The API with the dashboard, served by uvicorn in a thread (no dispatcher: the tests play the worker)."""
    port = services.free_port()
    config = uvicorn.Config(create_app(settings, start_dispatcher=False), host="127.0.0.1", port=port,
                            log_level="warning", timeout_graceful_shutdown=1, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="browser-test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test API did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("browser-home")
    yield from serve(Settings(home=home, worker_token=WORKER_TOKEN, redis_url="redis://127.0.0.1:1/0"))


@pytest.fixture(scope="session")
def token_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second API whose write endpoints need the API token `API_TOKEN`."""
    home = tmp_path_factory.mktemp("browser-token-home")
    yield from serve(Settings(home=home, worker_token=WORKER_TOKEN, redis_url="redis://127.0.0.1:1/0",
                              api_token=API_TOKEN))


def mask_with_sparsity(shape: tuple[int, int], sparsity: float, seed: int) -> np.ndarray:
    """A mask whose kept weights favour the centre of a 28×28 input, like MNIST's pruned first layer."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    score = rng.random(shape)
    if cols == 784:
        yy, xx = np.divmod(np.arange(cols), 28)
        centre = np.exp(-(((yy - 13.5) ** 2 + (xx - 13.5) ** 2) / 60.0))
        score = score * 0.35 + centre[None, :]
    keep = max(1, round(rows * cols * (1 - sparsity)))
    threshold = np.partition(score.ravel(), -keep)[-keep]
    return np.asarray(score >= threshold)


@dataclass
class FakeWorker:
    """Plays a worker through the worker endpoints: start, one report per epoch, finish."""

    base_url: str
    client: httpx.Client = field(init=False)
    name: str = "w1"

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        self.auth = {"Authorization": f"Bearer {WORKER_TOKEN}"}
        self.leases: dict[int, str] = {}  # run id -> the lease `start` handed out, carried by later calls

    def run_auth(self, run_id: int) -> dict[str, str]:
        lease = self.leases.get(run_id)
        return {**self.auth, LEASE_HEADER: lease} if lease else self.auth

    def submit(self, name: str = "browser-run", epochs: int = 5, **overrides: Any) -> int:
        config: dict[str, Any] = {"name": name, "tags": ["browser"], "dataset": {"name": "digits"},
                                  "training": {"epochs": epochs},
                                  "pruning": {"target_sparsity": 0.9, "recovery": {"kind": "splice"},
                                              "schedule": {"kind": "cubic", "start_epoch": 1}}}
        config.update(overrides)
        response = self.client.post("/api/runs", json=config)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def start(self, run_id: int) -> None:
        response = self.client.post(f"/api/worker/runs/{run_id}/start", json={"worker": self.name}, headers=self.auth)
        assert response.status_code == 200 and response.json()["proceed"], response.text
        if response.json().get("lease"):
            self.leases[run_id] = response.json()["lease"]

    def epoch(self, run_id: int, epoch: int, total: int, layers: tuple[tuple[str, tuple[int, int]], ...] = LENET,
              with_masks: bool = False, histograms: bool = False, **shape: float) -> dict[str, Any]:
        record = epoch_record(epoch, total, layers, histograms=histograms, **shape)
        masks = {}
        if with_masks:
            for i, (name, shape) in enumerate(layers):
                sparsity = next(stat["sparsity"] for stat in record["layers"] if stat["name"] == name)
                masks[name] = maskcodec.encode(mask_with_sparsity(shape, sparsity, seed=epoch * 31 + i)).to_json()
        response = self.client.post(f"/api/worker/runs/{run_id}/epochs",
                                    json={**record, "worker": self.name, "masks": masks}, headers=self.run_auth(run_id))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def finish(self, run_id: int, status: str = "completed", summary: dict[str, Any] | None = None,
               error: str | None = None) -> None:
        body: dict[str, Any] = {"worker": self.name, "status": status, "summary": summary}
        if error is not None:
            body["error"] = error
        response = self.client.post(f"/api/worker/runs/{run_id}/finish", json=body, headers=self.run_auth(run_id))
        assert response.status_code == 204, response.text

    def heartbeat(self, run_id: int | None = None) -> None:
        response = self.client.post("/api/worker/heartbeat", headers=self.auth, json={
            "worker": self.name, "hostname": "gpu-box-1", "queues": ["gpu", "cpu"], "device": "cuda",
            "device_name": "NVIDIA H100", "gpu_memory_mb": 81559, "run_id": run_id})
        assert response.status_code == 200, response.text

    def run(self, run_id: int) -> dict[str, Any]:
        return dict(self.client.get(f"/api/runs/{run_id}").json())

    def complete(self, run_id: int, epochs: int, accuracy: float = 0.95, sparsity: float = 0.9,
                 with_masks: bool = False, layers: tuple[tuple[str, tuple[int, int]], ...] = LENET,
                 histograms: bool = False) -> None:
        """Start, report every epoch (ending at `accuracy` and about `sparsity`), finish completed."""
        self.start(run_id)
        for e in range(1, epochs + 1):
            self.epoch(run_id, e, epochs, layers=layers, with_masks=with_masks, histograms=histograms,
                       final_acc=accuracy, final_sparsity=sparsity)
        final = epoch_record(epochs, epochs, layers, final_acc=accuracy, final_sparsity=sparsity)
        self.finish(run_id, summary={"final_sparsity": final["sparsity"], "final_test_acc": final["test_acc"],
                                     "best_test_acc": final["test_acc"]})


def weight_histogram(size: int, sparsity: float) -> tuple[dict[str, Any], float]:
    """A magnitude pruner's histogram: log10|w| normal, the smallest `sparsity` share pruned; and its threshold."""
    log_mean, log_std = -1.7, 0.45
    normal = statistics.NormalDist(log_mean, log_std)
    threshold = 10 ** normal.inv_cdf(min(max(sparsity, 1e-4), 1 - 1e-4))
    edges = [float(e) for e in np.geomspace(1e-4, 1.0, 33)]
    counts, kept = [], []
    for lo, hi in itertools.pairwise(edges):
        share = normal.cdf(math.log10(hi)) - normal.cdf(math.log10(lo))
        above = normal.cdf(math.log10(hi)) - normal.cdf(math.log10(max(lo, min(hi, threshold))))
        counts.append(round(size * share))
        kept.append(min(counts[-1], round(size * max(0.0, above))))
    return {"edges": edges, "counts": counts, "kept": kept}, round(threshold, 6)


def epoch_record(epoch: int, total: int, layers: tuple[tuple[str, tuple[int, int]], ...] = LENET,
                 final_acc: float = 0.95, final_sparsity: float = 0.9, histograms: bool = False) -> dict[str, Any]:
    """Plausible numbers for one epoch: cubic sparsity schedule, improving accuracy, churn that settles; with
    `histograms`, each layer's weight-magnitude histogram and the threshold that matches it."""
    progress = min(1.0, epoch / max(1, int(total * 0.75)))
    target = final_sparsity * (1 - (1 - progress) ** 3)
    stats = []
    nonzero = total_weights = 0
    for i, (name, shape) in enumerate(layers):
        size = math.prod(shape)
        sparsity = min(0.99, max(0.0, target * (1.0 - 0.08 * i)))  # many layers: later ones stay dense
        pruned = int(size * 0.9 * 3 * (1 - progress) ** 2 / max(1, total * 0.75)) + 3 * (i + 1)
        stats.append({"name": name, "shape": list(shape), "sparsity": round(sparsity, 4), "pruned": pruned,
                      "regrown": pruned // (3 + i), "threshold": round(0.01 + 0.05 * target, 5)})
        if histograms:
            stats[-1]["histogram"], stats[-1]["threshold"] = weight_histogram(size, sparsity)
        nonzero += round(size * (1 - sparsity))
        total_weights += size
    acc = 0.7 + (final_acc - 0.7) * (1 - math.exp(-epoch / 4)) / (1 - math.exp(-total / 4))
    return {
        "epoch": epoch, "train_loss": round(1.2 * math.exp(-epoch / 5) + 0.05, 4),
        "train_acc": round(min(1, acc + 0.02), 4),
        "test_loss": round(1.1 * math.exp(-epoch / 6) + 0.08, 4), "test_acc": round(acc, 4), "lr": 0.05,
        "sparsity": round(1 - nonzero / total_weights, 4), "target_sparsity": round(target, 4), "nonzero": nonzero,
        "total": total_weights, "epoch_seconds": 2.5, "samples_per_s": 24000.0, "layers": stats,
    }


@pytest.fixture(scope="session")
def worker(base_url: str) -> Iterator[FakeWorker]:
    fake = FakeWorker(base_url)
    yield fake
    fake.client.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing_dependency(str(CHROMIUM), "`make test` installs Debian's chromium as root")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


# Records every Content-Security-Policy violation in the page (Chromium also logs each as a console error).
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


class PageWatch:
    """Console errors, uncaught exceptions, CSP violations and dialogs of a page; some failed requests are expected."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.expected: list[str] = []
        self.csp: list[str] = []

    def expect_failed_request(self, url_part: str) -> None:
        self.expected.append(url_part)

    def on_console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or message.text.startswith("Refused to"):
            self.csp.append(message.text)
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if message.text.startswith("Failed to load resource") and any(part in url for part in self.expected):
            return
        self.errors.append(f"{message.text} ({url})")


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def page(chromium: Any, base_url: str, watch: PageWatch) -> Iterator[Any]:
    """A 1280×800 page on the test API; the test fails on any console error, page error or dialog."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=base_url)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    pg.add_init_script(CSP_RECORDER)
    pg.on("console", watch.on_console)
    pg.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    yield pg
    context.close()
    assert not watch.dialogs, f"dialogs opened: {watch.dialogs}"
    assert not watch.csp, f"Content-Security-Policy violations: {watch.csp}"
    assert not watch.errors, f"console errors: {watch.errors}"


def wait_js(page: Any, script: str, arg: Any = None, timeout: float = 15.0) -> Any:
    """Poll a JS function until it returns something truthy, and return it.

    Playwright's `wait_for_function` builds its predicate with `new Function` in the page, which the dashboard's
    Content-Security-Policy (`script-src 'self'`, no 'unsafe-eval') forbids; `evaluate` is not subject to it."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script} ({arg})")
        page.wait_for_timeout(100)


def chart(page: Any, chart_id: str, expression: str) -> Any:
    """Evaluate `expression` over the chart element `el` once it is drawn (scrolled to first)."""
    page.locator(f"#{chart_id}").scroll_into_view_if_needed()
    wait_js(page, "(id) => document.getElementById(id)?.data !== undefined", chart_id)
    return page.evaluate(f"(id) => {{ const el = document.getElementById(id); return {expression}; }}", chart_id)


def csp_violations(page: Any) -> list[str]:
    """The violations the page itself saw (securitypolicyviolation events since it loaded)."""
    return list(page.evaluate("() => window.__cspViolations || []"))


def wait_points(page: Any, chart_id: str, count: int, trace: int = 0) -> None:
    """Wait until a chart's trace holds `count` x values (the chart is scrolled to: off screen it is not drawn)."""
    page.locator(f"#{chart_id}").scroll_into_view_if_needed()
    wait_js(page, "([id, i, n]) => document.getElementById(id)?.data?.[i]?.x?.length === n", [chart_id, trace, count])


def screenshot(page: Any, name: str, full_page: bool = True) -> Path:
    """Save a PNG; for a full page, scroll through it first, since charts off screen are drawn on approach."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if full_page:
        page.evaluate("""async () => {
            const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            for (let y = 0; y < document.documentElement.scrollHeight; y += 400) {
                window.scrollTo(0, y);
                await frame();
            }
            window.scrollTo(0, 0);
            await frame();
        }""")
        page.wait_for_timeout(300)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def chart_points(page: Any, chart_id: str, trace: int = 0) -> int:
    """How many x values a Plotly chart's trace holds (-1 before it is drawn)."""
    return int(page.evaluate(
        "([id, i]) => { const el = document.getElementById(id);"
        " return el && el.data && el.data[i] ? el.data[i].x.length : -1 }",
        [chart_id, trace]))
