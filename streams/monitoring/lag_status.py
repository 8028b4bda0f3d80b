"""Burrow-style consumer-lag status over a sliding window of samples: pure, no I/O, clock injected.

One :class:`PartitionHistory` per (group, topic, partition) keeps the samples of the last
``window`` (plus one older sample, so a change that happened right at the window's edge is still
seen). :meth:`PartitionHistory.evaluate` applies these rules; the status is the *worst* of all
that hold (``OK < WARN < REWIND < STALL < STOP``; ``NO_COMMIT``, between ``OK`` and ``WARN``,
is set by the sampler for partitions without a committed offset, never by these rules), and
a group's status is its worst partition's.

* ``REWIND``: the committed offset went backwards between two consecutive samples, and the later
  of the two is inside the window (so a rewind is reported for one window, then forgotten); or
  the commit log shows a backwards commit (the sample's ``rewind``) inside the window, which
  catches a reset that the group replayed past before the next sample.
* ``OK``: the latest lag is 0 (an idle consumer of an idle topic is healthy however long it
  has not committed).
* ``STALL``: the consumer is behind and not moving: the last ``stall_samples`` (or more)
  consecutive samples all have lag > 0 and the same committed offset.
* ``STOP``: behind and no commit for longer than the window. With commit times (the sample's
  ``committed_at``, read from ``__consumer_offsets``): lag > 0 and now minus the later of the
  last commit and the moment the lag began (the oldest unread record's timestamp,
  ``at - lag_seconds``) exceeds the window; one sample is enough, so a group that died long
  ago is STOP on the monitor's first round, and a stop is seen on the first evaluation after
  the threshold. Without commit times (the topic cannot be read): a STALL whose stuck run
  started more than ``window`` before now (the clock starts at the later of the last
  committed-offset move and the first sample showing lag). Either way a consumer idle at lag 0
  for an hour is not STOP at the first new record.
* ``WARN``: the consumer is moving but falling behind: the samples cover the whole window (the
  oldest kept sample is at or before its start, at least ``trend_samples`` of them), every one
  has lag > 0, the lag grew at *every* step from one sample to the next (strictly: a step with
  equal lag breaks the trend) and the committed offset advanced; or, independent of the trend,
  the latest lag is at least ``alert_messages``.

``OffsetFetch`` does not report *when* an offset was committed; ``__consumer_offsets`` does.
With it, STALL and STOP are told apart as Burrow does: a consumer that keeps committing the same
offset is alive but stuck (STALL however long), one that stopped committing is STOP. Without it
"a commit" can only mean "the committed offset moved between two samples", and the two are
told apart by how long the lack of progress lasted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from phaseflow.streams.core.clock import Clock


class LagStatus(StrEnum):
    """A partition's (or group's) lag status; ``rank`` orders them from best to worst."""

    OK = "OK"
    # A partition of a watched group with no committed offset (the sampler's, never the
    # evaluator's): shown, not alerted; worse than OK so a group with one reads as such.
    NO_COMMIT = "NO_COMMIT"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {status: rank for rank, status in enumerate(LagStatus)}


def worst(statuses: Iterable[LagStatus]) -> LagStatus:
    """The worst of ``statuses`` (``OK`` for none)."""
    return max(statuses, key=lambda status: status.rank, default=LagStatus.OK)


@dataclass(frozen=True)
class LagPolicy:
    """Thresholds of the evaluation (see the module docstring for how each is used)."""

    window: timedelta
    alert_messages: int
    stall_samples: int = 3
    trend_samples: int = 3

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")
        if self.alert_messages < 1:
            raise ValueError(f"alert_messages must be >= 1, got {self.alert_messages}")
        if self.stall_samples < 2 or self.trend_samples < 2:
            # One sample cannot show that something did (not) move.
            raise ValueError("stall_samples and trend_samples must be >= 2")


@dataclass(frozen=True)
class Rewind:
    """The last time the commit log (``__consumer_offsets``) shows a group's committed offset
    of a partition going backwards: an offset reset or a replay."""

    at: datetime  # the lower commit's timestamp
    before: int
    after: int


@dataclass(frozen=True)
class LagSample:
    """One observation of a partition: offsets, lag in messages and seconds, and when."""

    at: datetime
    committed: int
    end: int
    lag: int  # effective lag in messages (transaction markers excluded), >= 0
    lag_seconds: float | None = None  # age of the oldest unconsumed record; None if unknown
    committed_at: datetime | None = None  # the group's last commit (any offset); None if unknown
    rewind: Rewind | None = None  # the last backwards commit in the commit log, if known


@dataclass(frozen=True)
class Verdict:
    """A status and the reason, in words an operator can act on."""

    status: LagStatus
    reason: str


class PartitionHistory:
    """The window of samples of one partition, and the state that outlives the window."""

    def __init__(self, policy: LagPolicy) -> None:
        self._policy = policy
        self._samples: deque[LagSample] = deque()
        # The current "behind and not moving" run: when it started and how many samples it has.
        # Kept outside the window because STOP is precisely "this run is longer than the window".
        self._stuck_since: datetime | None = None
        self._stuck_count = 0

    @property
    def latest(self) -> LagSample | None:
        return self._samples[-1] if self._samples else None

    @property
    def samples(self) -> tuple[LagSample, ...]:
        return tuple(self._samples)

    def add(self, sample: LagSample) -> None:
        """Record a sample; samples must arrive in time order."""
        previous = self.latest
        if previous is not None and sample.at < previous.at:
            raise ValueError(f"sample at {sample.at} is older than the latest ({previous.at})")
        if sample.lag <= 0:
            self._stuck_since, self._stuck_count = None, 0
        elif (
            previous is not None
            and self._stuck_since is not None
            and previous.committed == sample.committed
        ):
            self._stuck_count += 1
        else:
            self._stuck_since, self._stuck_count = sample.at, 1
        self._samples.append(sample)
        self._trim(sample.at)

    def evaluate(self, now: datetime) -> Verdict:
        """The partition's status at ``now`` (the worst rule that holds, see the module doc)."""
        self._trim(now)
        latest = self.latest
        if latest is None:
            return Verdict(LagStatus.OK, "no samples")
        cutoff = now - self._policy.window
        verdicts = [self._rewind(cutoff), self._stuck(now), *self._behind(cutoff, latest)]
        found = [verdict for verdict in verdicts if verdict is not None]
        if not found:
            if latest.lag == 0:
                return Verdict(LagStatus.OK, "caught up")
            return Verdict(LagStatus.OK, f"{latest.lag} behind and moving")
        return max(found, key=lambda verdict: verdict.status.rank)

    def _trim(self, now: datetime) -> None:
        # Keep one sample at or before the cutoff: the pair (it, first in-window) may be a rewind.
        cutoff = now - self._policy.window
        while len(self._samples) > 1 and self._samples[1].at <= cutoff:
            self._samples.popleft()

    def _rewind(self, cutoff: datetime) -> Verdict | None:
        logged = self._samples[-1].rewind
        if logged is not None and logged.at > cutoff:
            return Verdict(
                LagStatus.REWIND,
                f"committed offset went back from {logged.before} to {logged.after} "
                f"at {logged.at:%H:%M:%S} UTC (commit log)",
            )
        samples = self._samples
        for before, after in pairwise(samples):
            if after.at > cutoff and after.committed < before.committed:
                return Verdict(
                    LagStatus.REWIND,
                    f"committed offset went back from {before.committed} to {after.committed}",
                )
        return None

    def _stuck(self, now: datetime) -> Verdict | None:
        latest = self._samples[-1]
        window = self._policy.window
        if latest.lag > 0 and latest.committed_at is not None:
            stopped = self._stopped_by_commit_time(now, latest, latest.committed_at)
            if stopped is not None:
                return stopped
        if self._stuck_since is None or self._stuck_count < self._policy.stall_samples:
            return None
        stuck_for = (now - self._stuck_since).total_seconds()
        what = f"{latest.lag} behind, committed offset {latest.committed} unchanged"
        # With commit times, STOP is decided above: an unchanged offset that is still being
        # committed is a live consumer that does not progress (STALL however long).
        if latest.committed_at is None and now - self._stuck_since > window:
            return Verdict(
                LagStatus.STOP,
                f"{what} for {stuck_for:.1f} s (longer than the "
                f"{window.total_seconds():g} s window)",
            )
        return Verdict(LagStatus.STALL, f"{what} over {self._stuck_count} samples")

    def _stopped_by_commit_time(
        self, now: datetime, latest: LagSample, committed_at: datetime
    ) -> Verdict | None:
        # The clock starts at the later of the last commit and the moment the lag began (the
        # oldest unread record's timestamp): a consumer idle at lag 0 is not STOP at once.
        if latest.lag_seconds is not None:
            began = latest.at - timedelta(seconds=latest.lag_seconds)
        else:  # an open transaction hides that record: from the first sample with lag
            began = self._stuck_since or latest.at
        quiet_since = max(committed_at, began)
        if now - quiet_since <= self._policy.window:
            return None
        return Verdict(
            LagStatus.STOP,
            f"{latest.lag} behind and no commit for {(now - quiet_since).total_seconds():.1f} s "
            f"(longer than the {self._policy.window.total_seconds():g} s window; last commit "
            f"{(now - committed_at).total_seconds():.1f} s ago)",
        )

    def _behind(self, cutoff: datetime, latest: LagSample) -> list[Verdict]:
        found: list[Verdict] = []
        if latest.lag >= self._policy.alert_messages:
            found.append(
                Verdict(
                    LagStatus.WARN,
                    f"{latest.lag} behind (threshold {self._policy.alert_messages})",
                )
            )
        # The trend rule needs the *whole* window: a 3-sample rise inside a consumer's normal
        # wobble (lag 1..9 around a steady rate) is noise, and flagged 32 of 55 samples WARN.
        samples = self._samples
        if samples[0].at > cutoff or len(samples) < self._policy.trend_samples:
            return found  # not watched for a whole window yet
        if any(sample.lag <= 0 for sample in samples):
            return found
        moved = samples[-1].committed > samples[0].committed
        grew_every_step = all(b.lag > a.lag for a, b in pairwise(samples))
        if moved and grew_every_step:
            found.append(
                Verdict(
                    LagStatus.WARN,
                    f"falling behind: lag grew at every one of {len(samples) - 1} steps "
                    f"from {samples[0].lag} to {samples[-1].lag} over the "
                    f"{self._policy.window.total_seconds():g} s window while commits moved",
                )
            )
        return found


PartitionKey = tuple[str, str, int]  # (group, topic, partition)


class LagEvaluator:
    """Histories of many partitions of many groups; statuses at the injected clock's now."""

    def __init__(self, policy: LagPolicy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock
        self._histories: dict[PartitionKey, PartitionHistory] = {}

    def observe(self, key: PartitionKey, sample: LagSample) -> None:
        history = self._histories.get(key)
        if history is None:
            history = self._histories[key] = PartitionHistory(self.policy)
        history.add(sample)

    def keys(self) -> list[PartitionKey]:
        return sorted(self._histories)

    def latest(self, key: PartitionKey) -> LagSample | None:
        history = self._histories.get(key)
        return history.latest if history is not None else None

    def evaluate(self, key: PartitionKey) -> Verdict:
        history = self._histories.get(key)
        if history is None:
            return Verdict(LagStatus.OK, "no samples")
        return history.evaluate(self._clock.now())

    def evaluate_all(self) -> dict[PartitionKey, Verdict]:
        now = self._clock.now()
        return {key: self._histories[key].evaluate(now) for key in self.keys()}

    def group_status(self, group: str) -> LagStatus:
        """The worst status among the group's partitions (``OK`` if none are known)."""
        return worst(
            verdict.status for key, verdict in self.evaluate_all().items() if key[0] == group
        )

    def forget_stale(self) -> list[PartitionKey]:
        """Drop partitions not sampled for a whole window (topic deleted, offsets expired)."""
        cutoff = self._clock.now() - self.policy.window
        stale = [
            key
            for key, history in self._histories.items()
            if history.latest is None or history.latest.at <= cutoff
        ]
        for key in stale:
            del self._histories[key]
        return stale
