"""Records Faust does not take no longer hold every other partition's fetch for 0.1 s.

aiokafka 0.14's fetcher sends no fetch to a broker while a partition led by that broker still
has fetched records nobody has taken, until ``prefetch_backoff`` (0.1 s) has passed since they
arrived; it waits so that a consumer that is about to take them is not sent more. Faust asks
aiokafka only for the partitions active in its own view: it "pauses" the changelog partitions of
its tables after recovery in its bookkeeping alone, so aiokafka still fetches them. A worker's
own table write (a changelog record) is fetched back, never taken, and for 0.1 s no fetch goes
to the broker for any partition: with one broker, none at all. It happens once per changelog
partition after each assignment (the records then sit there untaken, and their partition is
not fetched again), but each time a completion arriving in that window waits for it.

Traced on Apache Kafka, at_least_once, 150 samples of ``bench.readiness``-style trigger latency
(fetch sends and responses per partition, Faust's deliveries, the agent's batches): four of the
five slowest "decided" times (62-124 ms against a median of 23 ms) were the first fetch of each
of the four readiness changelog partitions holding the completion's fetch for 0.1 s. The p99
of 300 samples is the fourth slowest, so those four set it.

``fetch_only_what_is_taken`` makes records of a partition the consumer did not ask for in its
last ``fetched_records`` call (Faust's paused partitions) hold no fetch: they stay buffered as
before (and are handed over if Faust resumes the partition without a seek), so nothing fetched
or delivered changes, only when the next fetch goes out. A consumer that asks for every
partition (``getmany()`` with none named: every plain aiokafka consumer) is unchanged.
"""

from __future__ import annotations

from typing import Any

from aiokafka.consumer import fetcher as aiokafka_fetcher

_INSTALLED = "__phaseflow_fetch_only_what_is_taken__"
#: The partitions the consumer asked for in its last fetched_records call (None: every one).
_TAKEN = "_phaseflow_taken_partitions"


def untaken_records(fetcher: Any) -> list[Any]:
    """The buffered fetch results of partitions the consumer's last request left out."""
    taken = getattr(fetcher, _TAKEN, None)
    if not taken:
        return []
    return [
        result
        for tp, result in fetcher._records.items()
        if tp not in taken and isinstance(result, aiokafka_fetcher.FetchResult)
    ]


def fetch_only_what_is_taken() -> None:
    """Patch aiokafka's Fetcher so records nobody takes hold no fetch (idempotent)."""
    fetcher_class: Any = aiokafka_fetcher.Fetcher
    if getattr(fetcher_class, _INSTALLED, False):
        return
    fetched_records = fetcher_class.fetched_records
    actions_per_node = fetcher_class._get_actions_per_node

    # aiokafka's own signature, timeout included.
    async def fetched_records_noting(
        self: Any,
        partitions: Any,
        timeout: float = 0,  # noqa: ASYNC109
        max_records: int | None = None,
    ) -> Any:
        setattr(self, _TAKEN, frozenset(partitions) if partitions else None)
        return await fetched_records(self, partitions, timeout=timeout, max_records=max_records)

    def actions_without_untaken_holds(self: Any, assignment: Any) -> Any:
        # A result whose backoff is over holds nothing; its partition is still not re-fetched
        # while it is buffered (aiokafka fetches a partition only once its records are taken).
        for result in untaken_records(self):
            result._backoff = 0
        return actions_per_node(self, assignment)

    fetcher_class.fetched_records = fetched_records_noting
    fetcher_class._get_actions_per_node = actions_without_untaken_holds
    setattr(fetcher_class, _INSTALLED, True)
