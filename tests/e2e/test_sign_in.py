"""Sign-in for teams in real Chromium: Streamlit's native OIDC against a local test provider
(``oidc-provider-mock``, started here on 127.0.0.1), two users, each seeing only their own cases;
a guessed ``?case=`` of the other user's case is refused like a missing one."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from mu_core.serve import serve_command
from tests.e2e.conftest import ROOT, _free_port

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def _wait_ok(url: str, proc: subprocess.Popen, log: Path, want: str | None = None) -> None:
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if want is None or resp.read().decode().strip() == want:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"{url} did not come up; see {log}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The OIDC test provider and the app with ``[auth]`` in its secrets, both on 127.0.0.1."""
    home = tmp_path_factory.mktemp("team_home")
    provider_port, app_port = _free_port(), _free_port()
    provider_log = open(home / "provider.log", "w")
    provider = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(provider_port),
                                 "--user", "alice@example.org", "--user", "bob@example.org"],
                                stdout=provider_log, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{provider_port}"
    secrets_file = home / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        'client_id = "mu-audit"\n'
        'client_secret = "mu-audit-secret"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
    )
    app_log = open(home / "server.log", "w")
    command = serve_command(port=app_port, address="127.0.0.1", secrets_file=str(secrets_file))
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    env = {**os.environ, "MU_AUDIT_HOME": str(home / "mu_audit"), "PYTHONUNBUFFERED": "1"}
    app = subprocess.Popen(command, cwd=ROOT, env=env, stdout=app_log, stderr=subprocess.STDOUT)
    try:
        _wait_ok(f"{issuer}/.well-known/openid-configuration", provider, home / "provider.log")
        _wait_ok(f"http://127.0.0.1:{app_port}/_stcore/health", app, home / "server.log", "ok")
        yield f"http://127.0.0.1:{app_port}"
    finally:
        for proc in (app, provider):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        app_log.close()
        provider_log.close()


def sign_in(browser: Browser, url: str, user: str) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(90_000)
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=user, exact=True).click()  # the provider's one-click user
    page.wait_for_url(re.compile(re.escape(url)))
    page.wait_for_selector(IDLE)
    expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()
    return page


def new_case(page: Page, name: str) -> str:
    page.get_by_label("New case name").fill(name)
    page.get_by_role("button", name="New case").click()
    page.wait_for_url(re.compile(r"case=[0-9]{8}-[0-9]{6}-[0-9a-f]{6}"))
    page.wait_for_selector(IDLE)
    return re.search(r"case=([0-9a-f-]+)", page.url).group(1)


def test_two_users_each_see_only_their_own_cases(browser: Browser, team_server: str) -> None:
    alice = sign_in(browser, team_server, "alice@example.org")
    expect(alice.get_by_text("Single-user install")).to_have_count(0)
    alice_case = new_case(alice, "Alice private audit")
    expect(alice.get_by_text("Alice private audit").first).to_be_visible()

    bob = sign_in(browser, team_server, "bob@example.org")
    expect(bob.get_by_text("No saved cases yet.")).to_be_visible()
    expect(bob.get_by_text("Alice private audit")).to_have_count(0)
    bob_case = new_case(bob, "Bob private audit")

    # a guessed (here: known) id of Alice's case is refused exactly like a missing case
    bob.goto(f"{team_server}/?case={alice_case}")
    bob.wait_for_selector(IDLE)
    expect(bob.get_by_text(f"Case '{alice_case}' does not exist")).to_be_visible()
    expect(bob.get_by_text("No case is open")).to_be_visible()
    expect(bob.get_by_text("Alice private audit")).to_have_count(0)

    # a new tab without ?case= opens no case, and offers the one this browser opened last
    tab = alice.context.new_page()
    tab.goto(team_server)
    tab.wait_for_selector(IDLE)
    expect(tab.get_by_text("No case is open")).to_be_visible()
    tab.get_by_role("button", name="Resume Alice private audit").click()
    tab.wait_for_url(re.compile(f"case={alice_case}"))
    tab.close()

    alice.reload()
    alice.wait_for_selector(IDLE)
    expect(alice.get_by_text("Alice private audit").first).to_be_visible()
    expect(alice.get_by_text("Bob private audit")).to_have_count(0)
    alice.goto(f"{team_server}/?case={bob_case}")
    alice.wait_for_selector(IDLE)
    expect(alice.get_by_text(f"Case '{bob_case}' does not exist")).to_be_visible()
