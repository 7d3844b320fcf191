"""``python -m dashboard [--home DIR] [--port P] [--host H]``: start the Streamlit server.

Streamlit listens on every interface, without authentication, unless told otherwise, and sends usage
statistics by default: this entry point binds to 127.0.0.1 unless the user passes ``--host``, and always
turns the statistics off.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def command(port: int, host: str) -> list[str]:
    """The streamlit command line the server runs with."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
            # The app's files do not change under a running server; watching them only costs CPU.
            "--server.fileWatcherType", "none"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("TOKENMILL_HOME", "."),
                        help="workspace home with data/, runs/ and metrics/ (env TOKENMILL_HOME, default .)")
    parser.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: loopback only; 0.0.0.0 exposes it to the network)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    home = Path(args.home).resolve()
    if not home.is_dir():
        parser.error(f"--home {home} is not a directory")
    # The server must import this same checkout's packages, also from an editable install made before
    # dashboard/ existed, so the checkout goes first on its path.
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, TOKENMILL_HOME=str(home),
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    print(f"tokenmill dashboard for {home} on http://{args.host}:{args.port}", flush=True)
    # Replace this process so that signals sent to `python -m dashboard` reach the server itself.
    os.execve(sys.executable, command(args.port, args.host), env)
    return 0  # not reached: execve only returns by raising


if __name__ == "__main__":
    raise SystemExit(main())
