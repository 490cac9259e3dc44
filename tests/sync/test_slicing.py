"""Slicing a day's due ranges: slice counts, bounds at density quantiles, largest first."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dropbox_team_log.sync.slicing import DensityProfile, cut, plan, slice_count

DAY0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def office_day(n: int, seed: int = 3) -> np.ndarray:
    """`n` event times of a day, 80% of them between 09:00 and 17:00."""
    rng = np.random.default_rng(seed)
    busy = rng.integers(DAY0 + 9 * 3600, DAY0 + 17 * 3600, int(n * 0.8))
    quiet = rng.integers(DAY0, DAY0 + 86_400, n - len(busy))
    return np.sort(np.concatenate([busy, quiet]))


@pytest.mark.parametrize(
    ("rows", "concurrency", "want"),
    [
        (0, 4, 1),
        (850, 4, 1),  # fits one page at the planned fill
        (851, 4, 4),  # two pages' worth: rounded up to a full round of 4 workers
        (5_000, 4, 8),  # 6 one-page slices -> 8 (two full rounds)
        (16_000, 4, 20),
        (2_000_000, 4, 32),  # capped: several pages per slice
        (50_000, 1, 1),  # one worker: slicing would only add partial pages
    ],
)
def test_slice_count(rows: int, concurrency: int, want: int) -> None:
    assert slice_count(rows, page_limit=1000, concurrency=concurrency) == want


def test_cut_puts_bounds_at_quantiles_so_busy_hours_get_narrow_slices() -> None:
    profile = DensityProfile.from_day(office_day(20_000))
    slices = cut(DAY0, DAY0 + 86_400, profile, 10)
    assert slices[0][0] == DAY0 and slices[-1][1] == DAY0 + 86_400
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))  # contiguous
    counts = [profile.expected(lo, hi) for lo, hi in slices]
    assert sum(counts) == 20_000
    assert max(counts) - min(counts) <= 20_000 * 0.02  # about equal events each
    widths = [hi - lo for lo, hi in slices]
    assert min(widths) < max(widths) / 3  # office hours cut finer than the night


def test_cut_never_splits_a_second() -> None:
    profile = DensityProfile(np.full(5_000, DAY0 + 100, dtype=np.int64))
    assert cut(DAY0, DAY0 + 86_400, profile, 8) == [(DAY0, DAY0 + 86_400)]


def test_neighbour_day_moved_onto_this_one() -> None:
    yesterday = office_day(1_000) - 86_400
    profile = DensityProfile.from_day(yesterday, shift=86_400)
    assert profile.expected(DAY0, DAY0 + 86_400) == 1_000
    assert profile.expected(DAY0 - 86_400, DAY0) == 0


def test_uniform_profile_from_a_probe_page() -> None:
    profile = DensityProfile.uniform(DAY0, DAY0 + 3_600, 2_500.0)
    assert profile.expected(DAY0, DAY0 + 3_600) == pytest.approx(2_500.0)
    assert profile.expected(DAY0, DAY0 + 1_800) == pytest.approx(1_250.0, rel=0.01)
    big = DensityProfile.uniform(DAY0, DAY0 + 86_400, 3_000_000.0)  # bounded size
    assert len(big.seconds) <= 100_000
    assert big.expected(DAY0, DAY0 + 86_400) == pytest.approx(3_000_000.0)


def test_plan_covers_every_range_exactly_largest_slice_first() -> None:
    profile = DensityProfile.from_day(office_day(16_000))
    ranges = [(DAY0, DAY0 + 6 * 3600), (DAY0 + 8 * 3600, DAY0 + 86_400)]
    slices = plan(ranges, profile, page_limit=1000, concurrency=4)
    pieces = sorted(piece for piece, _ in slices)
    for lo, hi in ranges:  # each range tiled exactly by its own slices
        mine = [p for p in pieces if lo <= p[0] < hi]
        assert mine[0][0] == lo and mine[-1][1] == hi
        assert all(a[1] == b[0] for a, b in itertools.pairwise(mine))
    expected = [rows for _, rows in slices]
    assert expected == sorted(expected, reverse=True)
    assert max(expected) <= 1000  # each about a page: the workers finish together


def test_plan_of_a_quiet_range_is_one_slice() -> None:
    profile = DensityProfile.from_day(office_day(300))
    assert [
        p for p, _ in plan([(DAY0, DAY0 + 86_400)], profile, page_limit=1000, concurrency=4)
    ] == [(DAY0, DAY0 + 86_400)]
