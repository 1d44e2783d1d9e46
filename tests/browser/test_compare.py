"""The compare page: the config fields runs differ in, and a Pareto chart of one dataset and model at a time."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import FakeWorker, chart, screenshot, wait_js

pytestmark = pytest.mark.browser


def test_compare_shows_the_config_fields_that_differ(page: Any, worker: FakeWorker) -> None:
    a = worker.submit("diff-a", epochs=3, training={"epochs": 3, "lr": 0.1})
    b = worker.submit("diff-b", epochs=3, training={"epochs": 3, "lr": 0.02},
                      pruning={"target_sparsity": 0.9, "recovery": {"kind": "splice"},
                               "schedule": {"kind": "cubic", "start_epoch": 1}})
    worker.complete(a, 3)
    worker.complete(b, 3)
    page.goto(f"/compare?ids={a},{b}")
    table = page.locator("#config-diff-table")
    table.wait_for()
    fields = table.locator("tbody th.field-path").all_inner_texts()
    assert fields == ["training.lr"]  # equal fields (and the names) are hidden
    assert table.locator("tr[data-field='training.lr'] td").all_inner_texts() == ["0.1", "0.02"]
    page.get_by_label("Show all").check()
    table.locator("tr[data-field='training.batch_size']").wait_for()
    assert table.locator("tr.differs").count() == 1
    assert table.locator("tbody tr").count() > 10
    screenshot(page, "compare-config")


def test_pareto_shows_one_dataset_and_model_coloured_by_method(page: Any, worker: FakeWorker) -> None:
    digits = [worker.submit(f"pareto-gmp-{i}", epochs=2, preset="gmp", tags=["pareto"]) for i in range(3)]
    for i, run_id in enumerate(digits):
        worker.complete(run_id, 2, accuracy=0.9 + i / 100, sparsity=0.5 + i / 10)
    other = worker.submit("pareto-synthetic", epochs=2, dataset={"name": "synthetic"})
    worker.complete(other, 2, accuracy=0.99, sparsity=0.99)
    mnist = worker.submit("pareto-mnist", epochs=2, dataset={"name": "mnist"}, preset="dns")
    worker.complete(mnist, 2, accuracy=0.98, sparsity=0.97)
    page.goto("/compare")
    select = page.get_by_label("Dataset and model", exact=True)
    select.wait_for()
    wait_js(page, "() => document.getElementById('chart-pareto')?.dataset?.pair")
    pairs = page.evaluate("() => [...document.querySelectorAll('#pareto-pair option')].map(o => o.value)")
    assert pairs[0] == "digits|lenet300_100"  # the most common pair is the default; never a mix
    assert {"synthetic|lenet300_100", "mnist|lenet300_100"} <= set(pairs)
    ids = chart(page, "chart-pareto", "el.data.flatMap(t => t.customdata || [])")
    assert other not in ids and mnist not in ids and set(digits) <= set(ids)
    names = chart(page, "chart-pareto", "el.data.map(t => t.name)")
    assert "gmp" in names  # the preset, not "magnitude/unstructured"
    hover = chart(page, "chart-pareto", "el.data.find(t => t.name === 'gmp').text[0]")
    assert "lr" in hover and "batch" in hover
    select.select_option("mnist|lenet300_100")
    wait_js(page, "() => document.getElementById('chart-pareto')?.dataset?.pair === 'mnist|lenet300_100'")
    assert chart(page, "chart-pareto", "el.data.flatMap(t => t.customdata || [])") == [mnist]
    page.get_by_label("Published results").check()
    wait_js(page, "() => document.getElementById('chart-pareto').data.some(t => t.name === 'DNS (published)')")
    published = chart(page, "chart-pareto", "el.data.filter(t => t.legendgroup === 'published').map(t => t.name)")
    assert "Han et al. 2015 (published)" in published and "Sparse momentum (published)" in published
    screenshot(page, "compare-pareto")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()  # opened on a phone: the legend goes below the plot, which keeps its height
    wait_js(page, "() => document.getElementById('chart-pareto')?.dataset?.pair")
    page.get_by_label("Dataset and model", exact=True).select_option("mnist|lenet300_100")
    page.get_by_label("Published results").check()
    page.locator("#chart-pareto").scroll_into_view_if_needed()
    wait_js(page, "() => document.getElementById('chart-pareto')?.data?.some(t => t.name === 'DNS (published)')")
    assert chart(page, "chart-pareto", "el.layout.legend.yanchor") == "top"
    plot_height = chart(page, "chart-pareto", "el._fullLayout._size.h")
    assert plot_height >= 250, f"the legend squeezes the plot to {plot_height} px"
    wait_js(page, "() => document.documentElement.scrollWidth <= 390")
    screenshot(page, "compare-pareto-390")


def test_a_one_epoch_run_is_drawn_in_the_compare_charts(page: Any, worker: FakeWorker) -> None:
    # One epoch is one point: a trace in "lines" mode alone drew nothing, so the run was only in the legend.
    one = worker.submit("one-epoch", epochs=1, training={"epochs": 1})
    three = worker.submit("three-epochs", epochs=3, training={"epochs": 3})
    worker.complete(one, 1)
    worker.complete(three, 3)
    page.goto(f"/compare?ids={one},{three}")
    modes = chart(page, "compare-test_acc", "el.data.map((t) => [t.name, t.mode])")
    assert modes == [[f"#{one} one-epoch", "lines+markers"], [f"#{three} three-epochs", "lines"]]


def test_a_sweep_that_does_not_exist_is_said_so(page: Any, watch: Any) -> None:
    watch.expect_failed_request("/api/sweeps/999")
    page.goto("/sweeps/999")
    page.locator(".notice.error", has_text="There is no sweep 999.").wait_for()


def test_unknown_ids_are_named_and_the_runs_that_exist_are_compared(page: Any, worker: FakeWorker,
                                                                    watch: Any) -> None:
    # One unknown id blanked the comparison: "Could not load the runs: run 99999 not found", run 17 not shown either.
    watch.expect_failed_request("/api/")
    a = worker.submit("partial-a", epochs=2, training={"epochs": 2})
    b = worker.submit("partial-b", epochs=2, training={"epochs": 2, "lr": 0.02})
    worker.complete(a, 2)
    worker.complete(b, 2)
    page.goto(f"/compare?ids={a},abc,999999,{b},0,99999999999")
    table = page.locator("#compare-table")
    table.wait_for()
    assert table.locator("tbody td.name").all_inner_texts() == [f"#{a} partial-a", f"#{b} partial-b"]
    notice = page.locator("#compare-left-out")
    notice.wait_for()
    text = notice.inner_text()
    assert "not found: 999999" in text, text
    assert "not a valid id: abc, 0, 99999999999" in text, text
    assert "Could not load" not in page.locator("#app").inner_text()
    names = chart(page, "compare-test_acc", "el.data.map((t) => t.name)")
    assert names == [f"#{a} partial-a", f"#{b} partial-b"]
    page.locator("#config-diff-table tr[data-field='training.lr']").wait_for()


def test_a_comparison_of_unknown_ids_only_names_them(page: Any, watch: Any) -> None:
    watch.expect_failed_request("/api/")
    page.goto("/compare?ids=999998,x")
    notice = page.locator("#compare-left-out")
    notice.wait_for()
    assert "not found: 999998" in notice.inner_text() and "not a valid id: x" in notice.inner_text()
    assert page.locator("#compare-table tbody tr").count() == 0
