"""Background work of a service, and what happens when it fails — one way for every service:

- a batch a consumer cannot process is retried from its stored offsets by the consumer
  itself (``shared.consumer.PgOffsetConsumer``; readiness says unhealthy meanwhile),
  and a record that can never be read goes to the dead-letter topic with its reason;
- anything else that ends a background task (the consumer loop, a worker, the clock, the
  relay) takes the process down: ``supervised`` below. The process manager (``kizuna up``,
  compose, Kubernetes) restarts it, and the new process resumes from what PostgreSQL holds,
  instead of a zombie that answers HTTP but processes nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

log = logging.getLogger("kizuna.service")
failed: list[BaseException] = []
# Tests that run services in-process turn this off to see the failure instead of a SIGTERM.
exit_on_failure = True


def supervised(coro, name: str, stop: asyncio.Event) -> asyncio.Task:
    task = asyncio.create_task(coro, name=name)

    def done(t: asyncio.Task) -> None:
        if t.cancelled() or stop.is_set():
            return
        exc = t.exception()
        log.critical(
            "background task %s ended unexpectedly: %r; stopping the service",
            name,
            exc,
            exc_info=exc,
        )
        failed.append(exc or RuntimeError(f"{name} ended"))
        stop.set()
        if exit_on_failure:
            os.kill(os.getpid(), signal.SIGTERM)

    task.add_done_callback(done)
    return task
