"""analytics_client: send catalog events to a village-analytics collector.

``Client`` sends from a background thread; ``AsyncClient`` from an asyncio task. Both keep a
bounded queue (oldest dropped first, counted), send batches of ``flush_at`` events at least every
``flush_interval`` seconds, retry failures with capped exponential backoff and full jitter
(honouring ``Retry-After``), stamp ``sent_at`` on every attempt, keep each event's ``event_id``
across retries (so the collector answers a resend as duplicates), sample per actor and honour
opt-out. The thread client flushes at interpreter exit.
"""

from analytics_client.aio import AsyncClient
from analytics_client.client import Client
from analytics_client.core import VERSION, backoff_delay, classify, retry_after, sample_fraction, sampled

__all__ = ["AsyncClient", "Client", "VERSION", "backoff_delay", "classify", "retry_after",
           "sample_fraction", "sampled"]
