"""One scrape: every target of every source fetched concurrently, bounded by the timeout.

Nothing is fetched between scrapes (no background polling) and no sample carries a
timestamp, as the Prometheus exporter guidelines ask. A target that fails, times out or
answers nonsense gives `<source>_up 0`; its state change (not every failed scrape) is
logged. Scrapes that arrive while one is in flight share its result, so ten scrapers
cost the targets one fetch, not ten.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from podkit.adapters.prometheus.api import Source, SourceError
from podkit.adapters.prometheus.model import Family, merge, render


class Scraper:
    def __init__(
        self,
        sources: list[Source],
        *,
        timeout: float,
        const_labels: dict[str, str],
        log: Any,
        registry: CollectorRegistry,
    ) -> None:
        self.sources = sources
        self.timeout = timeout
        self.log = log
        self._state: dict[tuple[str, str], bool] = {}
        # (source, target, labels of its series): fixed at startup, not rebuilt per scrape.
        self._jobs: list[tuple[Source, str, dict[str, str]]] = []
        for source in sources:
            labels = {**const_labels, **source.labels}
            for target in source.targets:
                own = dict(labels)
                if len(source.targets) > 1:
                    own["addr"] = source.display(target)
                self._jobs.append((source, target, own))
        self._in_flight: asyncio.Future[bytes] | None = None
        self._errors = Counter(
            "stats_exporter_target_errors_total",
            "target fetches that gave up 0 (failed, timed out or answered nonsense)",
            ["source"],
            registry=registry,
        )
        self._duration = Histogram(
            "stats_exporter_scrape_duration_seconds",
            "time to fetch and render all targets for one scrape",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._shared = Counter(
            "stats_exporter_shared_scrapes_total",
            "scrapes answered with the result of a scrape already in flight",
            registry=registry,
        )

    async def scrape(self) -> bytes:
        """The text exposition of all sources, fetched now (or by the scrape in flight)."""
        task = self._in_flight
        if task is not None and not task.done():
            self._shared.inc()
        else:
            # Its own task, so a scraper that hangs up does not cancel the others' result.
            task = self._in_flight = asyncio.ensure_future(self._scrape_all())
        return await asyncio.shield(task)

    async def _scrape_all(self) -> bytes:
        started = time.perf_counter()
        jobs = self._jobs
        if len(jobs) == 1:
            source, target, _ = jobs[0]
            results = [await self._one(source, target)]
        else:
            results = await asyncio.gather(*(self._one(s, t) for s, t, _ in jobs))
        families: list[Family] = []
        for (source, _, labels), (ok, found) in zip(jobs, results, strict=True):
            for family in found:
                if labels:
                    family.samples = [({**labels, **own}, v) for own, v in family.samples]
                families.append(family)
            families.append(Family(f"{source.name}_up", "gauge", source.up_help).add(ok, labels))
        body = render(merge(families))
        self._duration.observe(time.perf_counter() - started)
        return body

    async def _one(self, source: Source, target: str) -> tuple[bool, list[Family]]:
        error = ""
        try:
            async with asyncio.timeout(self.timeout):
                data = await source.fetch(target)
            found = list(source.collect(target, data))
        except SourceError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no complete answer within --timeout {self.timeout:g}s"
        except Exception as exc:  # a plugin's bug must not turn a scrape into a 500
            error = f"source raised {type(exc).__name__}: {exc}"
        else:
            self._note(source, target, True, "")
            return True, found
        self._errors.labels(source.name).inc()
        self._note(source, target, False, error)
        return False, []

    def _note(self, source: Source, target: str, up: bool, error: str) -> None:
        key = (source.name, target)
        before = self._state.get(key)
        if before is up:
            return
        self._state[key] = up
        where = source.display(target)
        if up:
            self.log.info("target_up", source=source.name, target=where)
        else:
            self.log.warning("target_down", source=source.name, target=where, error=error)
