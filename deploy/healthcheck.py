#!/usr/bin/env python3
"""Container health probe for Kizuna services; the slim image has no curl.

    kizuna-healthcheck [URL | PATH]

A full URL is fetched as given. A path (default ``/readyz``) is fetched on 127.0.0.1 at the port
of the service this container runs: the service is read from the ``kizuna serve NAME`` command
line and its port from ``KIZUNA_<NAME>_PORT`` or the default. Exit 0 on a 2xx answer, else 1.
A container that serves nothing (``kizuna migrate``) counts as healthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

# Keep in step with shared/settings.py (the image has the package, but the probe must stay cheap
# and must not fail because the service's settings do).
DEFAULT_PORTS = {"ingest": 8001, "reports": 8002, "notifier": 8003, "classifier": 8004}


def served_service(proc: Path = Path("/proc")) -> str | None:
    """The service named by the first ``kizuna serve NAME`` process, lowest pid first (pid 1
    unless an init process runs in front of it)."""
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "serve" in args:
            names = [a for a in args[args.index("serve") + 1 :] if a in DEFAULT_PORTS]
            if names:
                return names[0]
    return None


def target_url(arg: str | None, environ=os.environ, proc: Path = Path("/proc")) -> str | None:
    """The URL to probe, or None when this container serves no HTTP."""
    if arg and arg.startswith(("http://", "https://")):
        return arg
    path = arg or "/readyz"
    name = served_service(proc)
    if name is None:
        return None
    port = int(environ.get(f"KIZUNA_{name.upper()}_PORT", DEFAULT_PORTS[name]))
    return f"http://127.0.0.1:{port}{path}"


def main(argv: list[str]) -> int:
    url = target_url(argv[1] if len(argv) > 1 else None)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
