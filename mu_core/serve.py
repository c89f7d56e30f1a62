"""Start the web app with a safe listen address (``python -m mu_core serve``, ``make run``).

Without sign-in (no ``[auth]`` section in ``.streamlit/secrets.toml``) the app is a single-user
install: every case is visible to whoever reaches the server, so it listens on 127.0.0.1 only and
a wider address is refused. With ``[auth]`` the app signs users in (Streamlit's OIDC ``st.login``)
and every case belongs to its owner, so it may listen on any address. This module never imports
streamlit: it starts it as a subprocess.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from .errors import AuditInputError

__all__ = ["auth_configured", "serve_command"]

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


def _secrets_files(root: Path) -> list[Path]:
    """Where Streamlit looks for secrets by default: the user's and the app folder's."""
    return [Path.home() / ".streamlit" / "secrets.toml", root / ".streamlit" / "secrets.toml"]


def auth_configured(secrets_files: list[Path] | None = None, *, root: Path = ROOT) -> bool:
    """Whether a secrets file Streamlit will read has an ``[auth]`` section (sign-in configured)."""
    for path in secrets_files if secrets_files is not None else _secrets_files(root):
        try:
            with open(path, "rb") as fh:
                if isinstance(tomllib.load(fh).get("auth"), dict):
                    return True
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise AuditInputError(f"'{path}' is not a readable TOML secrets file ({exc}).") from None
    return False


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def serve_command(*, port: int = 8501, address: str | None = None, secrets_file: str | None = None, root: Path = ROOT) -> list[str]:
    """The ``streamlit run app.py`` command line, its listen address checked against sign-in."""
    files = [Path(secrets_file)] if secrets_file else None
    if secrets_file and not Path(secrets_file).is_file():
        raise AuditInputError(f"Secrets file '{secrets_file}' does not exist.")
    signed_in = auth_configured(files, root=root)
    if address is None:
        address = "0.0.0.0" if signed_in else LOOPBACK
    if not signed_in and not _is_loopback(address):
        raise AuditInputError(
            f"Without sign-in MU Audit is a single-user install and listens on {LOOPBACK} only, not '{address}'; "
            "configure [auth] in .streamlit/secrets.toml (see README) to serve a team."
        )
    if not 1 <= port <= 65535:
        raise AuditInputError(f"--port must be between 1 and 65535, not {port}.")
    command = [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.address", address, "--server.port", str(port)]
    if secrets_file:
        command += ["--secrets.files", str(Path(secrets_file).resolve())]
    return command


def serve(*, port: int = 8501, address: str | None = None, secrets_file: str | None = None, headless: bool = False) -> int:
    """Run the app in the foreground until it stops; returns its exit status."""
    command = serve_command(port=port, address=address, secrets_file=secrets_file)
    if headless:
        command += ["--server.headless", "true"]
    print(f"MU Audit on {command[command.index('--server.address') + 1]}:{port} "
          f"({'sign-in required' if auth_configured([Path(secrets_file)] if secrets_file else None) else 'single-user install'})",
          file=sys.stderr)
    return subprocess.call(command, cwd=ROOT, env=os.environ.copy())
