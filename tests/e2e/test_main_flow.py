"""A newcomer's whole flow in real Chromium: Model -> Forget -> Unlearn -> Membership on digits."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
SLOW = 1_200_000  # ms: a guard against a hung step, not a speed goal (a busy 2-core machine is slow)


def settle(page: Page) -> None:
    page.wait_for_selector(IDLE, timeout=SLOW)


def go(page: Page, name: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=name).first.click()
    page.wait_for_url(re.compile(name if name != "Home" else ".*"), timeout=SLOW)
    settle(page)


def test_newcomer_trains_forgets_unlearns_and_sees_roc(page: Page, app_server: str) -> None:
    page.set_default_timeout(SLOW)
    page.goto(app_server)
    settle(page)
    expect(page.get_by_text("Was this data really forgotten")).to_be_visible()

    # Model: train the default CNN on digits
    go(page, "Model")
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.get_by_text(re.compile(r"Training cnn on digits: done"))).to_be_visible(timeout=SLOW)
    expect(page.get_by_text(re.compile(r"Current model: cnn on digits"))).to_be_visible(timeout=SLOW)

    # Forget: 100 random samples, with a thumbnail gallery
    go(page, "Forget")
    page.get_by_role("button", name="Save forget request").click()
    settle(page)
    expect(page.get_by_text("100 random training samples (seed 0)")).to_be_visible()
    expect(page.locator("[data-testid='stImage'] img").first).to_be_visible()
    assert page.locator("[data-testid='stImage'] img").count() == 60  # the first 60 of 100 samples

    # Unlearn: gradient ascent, then the retrained reference
    go(page, "Unlearn")
    page.get_by_role("button", name="Unlearn", exact=True).click()
    expect(page.get_by_text(re.compile(r"Unlearning with finetune: done"))).to_be_visible(timeout=SLOW)
    page.get_by_role("button", name="Compute retrained model").click()
    expect(page.get_by_text(re.compile(r"Retraining from scratch: done"))).to_be_visible(timeout=SLOW)
    settle(page)
    table = page.locator("[data-testid='stDataFrame']").first
    expect(table).to_be_visible()

    # Membership: run the default audit, read the verdict and see the ROC charts
    go(page, "Membership")
    page.get_by_role("button", name="Run audit").click()
    expect(page.get_by_text(re.compile(r"Membership audit: done"))).to_be_visible(timeout=SLOW)
    settle(page)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=SLOW)
    assert page.locator(".js-plotly-plot").count() >= 4  # ROC linear and log-log, per-class AUC, per-record exposure
    expect(page.get_by_text(re.compile(r"^(Forgotten|Not forgotten|Inconclusive)\.")).first).to_be_visible()
    for role in ("original", "unlearned", "retrained"):
        expect(page.locator(".js-plotly-plot").first.get_by_text(re.compile(rf"{role} \(AUC"))).to_be_visible()


def test_pickled_model_upload_is_refused_and_the_app_keeps_running(page: Page, app_server: str, tmp_path) -> None:
    """A .pt file that would run code when unpickled gets one sentence; nothing runs, nothing breaks."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    import torch

    torch.save({"weight": Payload()}, evil, pickle_module=pickle)
    page.goto(f"{app_server}/Model")
    settle(page)
    page.get_by_role("tab", name="Upload a model").click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(evil))
    settle(page)
    page.get_by_role("button", name="Import model").click()
    settle(page)
    expect(page.get_by_text(re.compile(r"holds pickled code or objects.*refused unopened"))).to_be_visible()
    assert not marker.exists()
    page.get_by_role("tab", name="Train a model").click()
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_visible()
