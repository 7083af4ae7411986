"""The latency histogram behind ``app.stats().latency``: bounded, and accurate to 6.25%."""

from __future__ import annotations

import random

from reactor._stats import LatencyHistogram


def test_percentiles_are_within_a_sixteenth_of_the_truth() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(-7, 1.5) for _ in range(20_000)]  # ~1 ms, long tail
    histogram = LatencyHistogram()
    for sample in samples:
        histogram.record(sample)
    ordered = sorted(samples)
    for fraction in (0.5, 0.9, 0.99):
        true = ordered[round(fraction * len(ordered)) - 1]
        assert abs(histogram.percentile(fraction) - true) <= true / 16 + 1e-6
    stats = histogram.snapshot()
    assert stats.count == 20_000
    assert stats.max >= ordered[-1] * 15 / 16


def test_extremes_stay_in_the_fixed_slots() -> None:
    histogram = LatencyHistogram()
    for seconds in (-1.0, 0.0, 1e-6, 10**7):
        histogram.record(seconds)
    assert len(histogram.counts) == 320
    assert histogram.counts[0] == 2 and histogram.counts[1] == 1 and histogram.counts[-1] == 1
    assert LatencyHistogram().snapshot().p99 == 0.0
