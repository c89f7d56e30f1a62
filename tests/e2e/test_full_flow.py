"""The whole flow a new user walks, in real Chromium, up to results on every analysis page: the
demo, the membership audit (verdict and ROC chart), an unlearning inversion and the neuron chart.

It waits for states (a job's "done", the verdict banner, a chart drawn), never for numbers or
times: the demo's content may change, and a busy machine only makes every step slower. The long
Playwright timeouts are guards against a hang, not speed goals (those live in ``benchmarks/``).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
GUARD = 1_200_000  # ms: only a hung step takes this long
VERDICT = re.compile(r"^(Forgotten|Not forgotten|Inconclusive)\.")


def settle(page: Page) -> None:
    page.wait_for_selector(IDLE, timeout=GUARD)


def go(page: Page, name: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=name).first.click()
    if name != "Home":
        page.wait_for_url(re.compile(name), timeout=GUARD)
    settle(page)


def finished(page: Page, label: str) -> None:
    """Wait until the page says the job whose label starts with ``label`` is done (and fail at
    once if it failed)."""
    done = page.get_by_text(re.compile(rf"{re.escape(label)}[^:]*: done in"))
    failed = page.locator("[data-testid='stAlertContentError']").filter(has_not_text="Not forgotten")  # a verdict, not a failure
    expect(done.or_(failed).first).to_be_visible(timeout=GUARD)
    assert failed.count() == 0 or done.count() > 0, failed.first.inner_text()
    settle(page)


@pytest.mark.timeout(3600)
def test_demo_audit_inversion_and_neurons_reach_results(page: Page, app_server: str) -> None:
    page.set_default_timeout(GUARD)
    page.goto(app_server)
    settle(page)
    expect(page.locator("[data-testid='stSidebarNav'] a").first).to_have_text(re.compile("Home"))

    # The demo: the job shows at once, with what it is doing, in the sidebar and on the page alike
    page.get_by_role("button", name="Try the demo").click()
    sidebar = page.locator("[data-testid='stSidebar'] [data-testid='stProgress']", has_text="Building the demo case:")
    main = page.locator("[data-testid='stMain'] [data-testid='stProgress']", has_text="Building the demo case:")
    expect(sidebar.or_(page.get_by_text(re.compile(r"Building the demo case: done in"))).first).to_be_visible(timeout=GUARD)
    if sidebar.count():
        expect(main).to_be_visible(timeout=GUARD)
    finished(page, "Building the demo case")
    expect(page.locator("[data-testid='stSidebar']").get_by_text(re.compile(r"Building the demo case — done"))).to_be_visible(timeout=GUARD)

    # Membership: the default audit of the demo's models; the verdict banner and the ROC chart
    go(page, "Membership")
    page.get_by_role("button", name="Run audit").click()
    finished(page, "Membership audit")
    expect(page.get_by_text(VERDICT).first).to_be_visible(timeout=GUARD)
    roc = page.locator(".js-plotly-plot").first
    expect(roc).to_be_visible(timeout=GUARD)
    expect(roc.get_by_text(re.compile(r"retrained \(AUC \d")).first).to_be_visible(timeout=GUARD)

    # Inversion attacks an unlearned model: run a method first if the demo has none
    go(page, "Inversion")
    if page.get_by_text("First run an unlearning method").count():
        go(page, "Unlearn")
        page.get_by_role("button", name="Unlearn", exact=True).click()
        finished(page, "Unlearning with")
        go(page, "Inversion")

    # Inversion: a short attack (10 steps, 1 restart) reaches a reconstruction
    for label, value in (("Steps per restart", "10"), ("Restarts", "1")):
        field = page.get_by_label(label)
        field.fill(value)
        field.press("Enter")
        settle(page)
    page.get_by_role("button", name="Run the inversion").click()
    finished(page, "Unlearning inversion")
    expect(page.get_by_text("reconstruction", exact=True).first).to_be_visible(timeout=GUARD)

    # Neurons: the explanation and its charts
    go(page, "Neurons")
    page.get_by_role("button", name="Explain neurons").click()
    finished(page, "Explaining neurons")
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=GUARD)
