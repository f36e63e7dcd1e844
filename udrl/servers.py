"""Several OpenAI-compatible servers behind one call: requests in flight, retries, health and throughput.

The ``openai`` teacher backend sends a whole ``generate()`` call's requests through :class:`ServerPool`:
up to ``concurrency`` at once, each to the least busy server still in rotation. A 429, a 5xx, a
connection error or a timeout is retried after an exponential backoff with jitter, on another server when
there is one; a server that fails ``max_failures`` times in a row leaves the rotation. When none is left,
``TeacherUnavailable`` says so in one line: the records written so far stay, and a rerun resumes.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from udrl.teacher import TeacherUnavailable

log = logging.getLogger(__name__)

BACKOFF_CAP = 30.0  # seconds: the longest wait before one retry, Retry-After included


def server_urls(urls: str | list[str] | None = None) -> list[str]:
    """Base URLs from ``--url`` (repeated or comma-separated) or else ``UDRL_TEACHER_URL`` / ``OPENAI_BASE_URL``."""
    if not urls:
        urls = os.environ.get("UDRL_TEACHER_URL") or os.environ.get("OPENAI_BASE_URL") or ""
    if isinstance(urls, str):
        urls = [urls]
    found = [u.strip().rstrip("/") for value in urls for u in value.split(",") if u.strip()]
    return list(dict.fromkeys(found))


def retryable(status: int) -> bool:
    """Statuses worth another try: rate limits, request timeouts and server errors."""
    return status in (408, 429) or status >= 500


def backoff_delay(attempt: int, base: float, retry_after: float = 0.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``base * 2**attempt`` with jitter, at least what
    the server asked for in Retry-After, at most :data:`BACKOFF_CAP`.

    Written by hand: no retry library is among the dependencies, and these few lines would not justify
    one. The jitter (half to all of the exponential delay) keeps threads that failed together from
    retrying together.
    """
    delay = base * 2**attempt * random.uniform(0.5, 1.0)
    return min(max(delay, retry_after), BACKOFF_CAP)


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", 0))
    except ValueError:  # an HTTP date: not worth parsing, the backoff applies
        return 0.0


@dataclass(eq=False)
class Server:
    """One server and what it did in this run."""

    url: str
    client: httpx.Client
    busy: int = 0  # requests in flight
    done: int = 0  # answers
    failures: int = 0
    streak: int = 0  # failures in a row
    dropped: str = ""  # why it left the rotation, empty while in it

    @property
    def name(self) -> str:
        return urlsplit(self.url).netloc or self.url


@dataclass
class ServerPool:
    """Requests spread over ``urls``, ``concurrency`` at a time; see the module docstring."""

    urls: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    concurrency: int = 4
    retries: int = 5
    backoff: float = 1.0
    max_failures: int = 3

    def __post_init__(self):
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self.servers = [Server(url, httpx.Client(base_url=url, headers=self.headers, timeout=self.timeout,
                                                 limits=limits)) for url in self.urls]
        self.retried = 0
        self.started: float | None = None  # the first request, for samples/s
        self._turn = 0
        self._lock = threading.Lock()

    # -- start ----------------------------------------------------------------------------------------
    def check(self) -> None:
        """Take servers that do not answer ``/models`` out of the rotation; raise if none answers."""
        for server in self.servers:
            try:
                server.client.get("/models").raise_for_status()
            except httpx.HTTPError as err:
                server.dropped = f"unreachable ({type(err).__name__})"
                log.warning("teacher server %s is unreachable; going on without it", server.url)
        if all(s.dropped for s in self.servers):
            raise TeacherUnavailable(f"no teacher server answers ({self._reasons()}); start one or fix --url / "
                                     "UDRL_TEACHER_URL")

    # -- requests -------------------------------------------------------------------------------------
    def map(self, path: str, bodies: list[dict]) -> list[tuple[dict, float]]:
        """POST every body concurrently; (answer, latency in ms) for each, in the order of ``bodies``."""
        if not bodies:
            return []
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies)), thread_name_prefix="teacher")
        try:
            futures = [pool.submit(self.post, path, body, stop) for body in bodies]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and future.exception() is not None:
                    raise future.exception()
            return [future.result() for future in futures]
        except BaseException:
            stop.set()  # the other requests give up instead of retrying
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def post(self, path: str, body: dict, stop: threading.Event | None = None) -> tuple[dict, float]:
        """One request with retries: (answer, latency in ms of the attempt that succeeded)."""
        stop = stop or threading.Event()
        errors: list[str] = []
        server = None
        for attempt in range(self.retries + 1):
            if stop.is_set():
                raise TeacherUnavailable("stopped")
            server = self._pick(avoid=server)
            started = time.perf_counter()
            retry_after = 0.0
            try:
                response = server.client.post(path, json=body)
                if response.is_success:
                    answer = response.json()
                    self._succeeded(server)
                    return answer, (time.perf_counter() - started) * 1000
                if not retryable(response.status_code):
                    self._release(server)
                    raise TeacherUnavailable(f"teacher server {server.url} refused a request: HTTP "
                                             f"{response.status_code} {response.text[:200]!r}")
                error, retry_after = f"HTTP {response.status_code}", _retry_after(response)
            except (httpx.TransportError, ValueError) as err:  # refused, reset, timed out, or not JSON
                error = type(err).__name__
            errors.append(f"{server.name}: {error}")
            self._failed(server, error)
            if attempt < self.retries:
                with self._lock:
                    self.retried += 1
                stop.wait(backoff_delay(attempt, self.backoff, retry_after))
        raise TeacherUnavailable(f"a teacher request failed {len(errors)} times ({'; '.join(errors[-3:])}); "
                                 "rerun the same command to resume")

    def _pick(self, avoid: Server | None) -> Server:
        """The least busy server in rotation (another than ``avoid`` if possible); ties go round robin."""
        with self._lock:
            alive = [s for s in self.servers if not s.dropped]
            if not alive:
                raise TeacherUnavailable(f"no teacher server is left ({self._reasons()}); start one and rerun "
                                         "the same command to resume")
            candidates = [s for s in alive if s is not avoid] or alive
            self._turn += 1
            order = {s: (i - self._turn) % len(self.servers) for i, s in enumerate(self.servers)}
            server = min(candidates, key=lambda s: (s.busy, order[s]))
            server.busy += 1
            if self.started is None:
                self.started = time.perf_counter()
            return server

    def _succeeded(self, server: Server) -> None:
        with self._lock:
            server.busy -= 1
            server.done += 1
            server.streak = 0

    def _failed(self, server: Server, error: str) -> None:
        with self._lock:
            server.busy -= 1
            server.failures += 1
            server.streak += 1
            if server.streak >= self.max_failures and not server.dropped:
                server.dropped = f"{server.streak} failures in a row, last {error}"
                log.warning("teacher server %s left the rotation: %s", server.url, server.dropped)

    def _release(self, server: Server) -> None:
        with self._lock:
            server.busy -= 1

    def _reasons(self) -> str:
        return "; ".join(f"{s.name}: {s.dropped}" for s in self.servers if s.dropped)

    # -- throughput -----------------------------------------------------------------------------------
    def rates(self) -> dict[str, float]:
        """Samples per second of each server (by name) and ``"all"``, since the first request."""
        elapsed = max(time.perf_counter() - self.started, 1e-9) if self.started else float("inf")
        rates = {s.name: s.done / elapsed for s in self.servers}
        rates["all"] = sum(s.done for s in self.servers) / elapsed
        return rates

    def progress(self) -> str:
        """One short line for a progress bar: rates, servers in rotation, failures and retries."""
        rates = self.rates()
        alive = sum(not s.dropped for s in self.servers)
        per_server = " ".join(f"{s.name}={rates[s.name]:.2f}" + ("(out)" if s.dropped else "")
                              for s in self.servers)
        return (f"{rates['all']:.2f}/s [{per_server}] {alive}/{len(self.servers)} up, "
                f"{sum(s.failures for s in self.servers)} failed, {self.retried} retried")

    def summary(self) -> list[str]:
        """End-of-run lines: overall, then one per server."""
        rates = self.rates()
        alive = sum(not s.dropped for s in self.servers)
        lines = [f"teacher servers: {alive} of {len(self.servers)} in rotation, {rates['all']:.2f} samples/s, "
                 f"{sum(s.failures for s in self.servers)} failures, {self.retried} retries"]
        for s in self.servers:
            lines.append(f"  {s.url}: {s.done} samples, {rates[s.name]:.2f}/s, {s.failures} failures"
                         + (f", out of rotation: {s.dropped}" if s.dropped else ""))
        return lines
