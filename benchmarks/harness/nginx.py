"""A private nginx serving the static pages on 127.0.0.1: its own configuration in a scratch folder,
one process in the foreground (a child of the harness, pinned to the server CPU), stopped at the end.

nginx answers a page for the cost of a file read, so the client's CPU is all that is measured. The
request-to-file mapping is the one ``chains.page_file`` implements: ``next_token`` names the file.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from .chains import API_BASE, FIRST_PAGE, KINDS
from .processes import BenchmarkError, pin, stop_process, tail

INSTALL_HINT = (
    "install nginx (Debian/Ubuntu: apt-get install nginx-light; Fedora: dnf install nginx; "
    "macOS: brew install nginx) or pass --nginx PATH"
)
_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx", "/opt/homebrew/bin/nginx")
ACCESS_TOKEN = "static-benchmark-token"
_START_ATTEMPTS = 5


def find_nginx(explicit: str | None = None) -> Path | None:
    """The nginx binary to run: ``explicit`` if given (None when it is not there), else the usual places."""
    if explicit is not None:
        path = Path(explicit)
        return path if path.is_file() else None
    found = shutil.which("nginx")
    if found:
        return Path(found)
    return next((Path(c) for c in _CANDIDATES if Path(c).is_file()), None)


def nginx_version(binary: Path) -> str:
    proc = subprocess.run([str(binary), "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (proc.stderr or proc.stdout).strip().removeprefix("nginx version: ")


def render_config(*, port: int, pages: Path, scratch: Path) -> str:
    """nginx.conf for the static pages; every path nginx writes to is inside ``scratch``."""
    routes = "\n".join(
        f"        location ~ {kind.route} {{\n"
        f"            try_files /{kind.folder}{'/$bench_list' if kind.takes_index else ''}"
        "/$bench_page.json =404;\n"
        "        }"
        for kind in KINDS
    )
    # Any client id and secret get the same day-long token: what the OAuth endpoint answers.
    token = f'{{"access_token":"{ACCESS_TOKEN}","token_type":"Bearer","expires_in":86400}}'
    temp_paths = "\n".join(
        f"    {name}_temp_path {scratch / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Written by benchmarks/harness/nginx.py for one benchmark run.
daemon off;
master_process off;
pid {scratch / "nginx.pid"};
error_log {scratch / "error.log"} warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
{temp_paths}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # Idle benchmark clients keep their connections between rounds.
    keepalive_timeout 3600s;
    keepalive_requests 1000000000;
    open_file_cache max=100000 inactive=3600s;
    open_file_cache_valid 3600s;
    types {{
        application/json json;
    }}
    default_type application/json;

    # The cursor names the page file; no cursor is the first page, anything else no page.
    map $arg_next_token $bench_page {{
        "" {FIRST_PAGE};
        "~^(?P<bench_cursor>p[0-9]{{6}})$" $bench_cursor;
        default no-such-page;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {pages};

        location = {API_BASE}/v0/oauth2/token {{
            return 200 '{token}';
        }}
{routes}
        location / {{
            return 404 '{{"status":404,"message":"no such benchmark page"}}';
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StaticServer:
    """``with StaticServer(nginx, pages, scratch, cpus) as server:`` serves ``server.base_url``."""

    def __init__(self, binary: Path, pages: Path, scratch: Path, cpus: frozenset[int] | None) -> None:
        self.binary = binary
        self.pages = pages
        self.scratch = scratch
        self.cpus = cpus
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_BASE}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchmarkError("nginx is not running")
        return self._proc.pid

    def __enter__(self) -> Self:
        self.scratch.mkdir(parents=True, exist_ok=True)
        failure = ""
        # The free port is found before nginx binds it: another program may take it in between.
        for _ in range(_START_ATTEMPTS):
            self.port = _free_port()
            failure = self._start()
            if not failure:
                return self
            if "Address already in use" not in failure:
                break
        raise BenchmarkError(f"nginx ({self.binary}) did not start: {failure.strip()[-2000:]}")

    def _start(self) -> str:
        """Start nginx on ``self.port``; what went wrong, or "" once it accepts connections."""
        config = self.scratch / "nginx.conf"
        config.write_text(render_config(port=self.port, pages=self.pages, scratch=self.scratch))
        stderr_path = self.scratch / "stderr.log"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(self.binary), "-p", str(self.scratch), "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        pin(proc.pid, self.cpus)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return tail(stderr_path) + tail(self.scratch / "error.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.02)  # not listening yet
                continue
            self._proc = proc
            return ""
        stop_process(proc)
        return "it did not listen within 10 s: " + tail(self.scratch / "error.log")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
