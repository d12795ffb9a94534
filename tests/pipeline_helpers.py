"""Helpers shared by the tests that run agents and ingest workers in-process against real servers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from kwatt import collectors
from kwatt.agent.config import AgentConfig
from kwatt.agent.runtime import Agent


def uniq(prefix: str) -> str:
    """A name no other test uses (databases, sites, client ids, groups on shared servers)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def build_agent(cfg: AgentConfig, drain_timeout_s: float = 10.0) -> Agent:
    """An Agent with the collectors its config names, built as `kwatt agent` builds them."""

    built = [(e, collectors.load(e.type).create(e.name, e.options)) for e in cfg.collectors]
    return Agent(cfg, built, drain_timeout_s=drain_timeout_s)


async def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)
