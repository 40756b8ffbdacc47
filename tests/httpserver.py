"""A directory served over HTTP on 127.0.0.1 (a free port) while a `with` block runs, counting every request:
how the tests give dnf a repository over the network, as a mirror would."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class Served:
    """What the server saw: requests per path, and the paths it answered with an error (404 and the like)."""

    port: int
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the directory (symlinks followed) and records each request in `served`."""

    served: Served

    def log_message(self, *args: object) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.served.requests[self.path] += 1
        if int(code) >= 400:
            self.served.errors[self.path] += 1

    def log_error(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[Served]:
    """directory over HTTP on 127.0.0.1 until the block ends."""
    served = Served(port=0)
    handler_class = type("Handler", (CountingHandler,), {"served": served})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(handler_class, directory=str(directory)))
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
