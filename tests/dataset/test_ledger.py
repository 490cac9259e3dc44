"""Coverage interval algebra against a brute-force per-second model (seeded random cases).

hypothesis is not in the pinned set, so the properties run over a few thousand seeded random
cases on a small time axis, where every second can be checked one by one.
"""

from __future__ import annotations

import random

import pytest

from dropbox_team_log.dataset.ledger import Coverage, merge_ranges

AXIS = 40  # seconds 0..39: small enough to brute-force, big enough for every overlap shape
CASES = 3000


# --- the model: a dict second -> fetched_at -------------------------------------------------


def model_of(coverage: Coverage) -> dict[int, int]:
    return {t: f for s, e, f in coverage.intervals for t in range(s, e)}


def runs(seconds: set[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive seconds, as half-open ranges."""
    out: list[tuple[int, int]] = []
    for t in sorted(seconds):
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + 1)
        else:
            out.append((t, t + 1))
    return out


def intervals_of(model: dict[int, int]) -> tuple[tuple[int, int, int], ...]:
    """Maximal runs of consecutive seconds with the same fetched_at (the canonical form)."""
    out: list[tuple[int, int, int]] = []
    for t in sorted(model):
        f = model[t]
        if out and out[-1][1] == t and out[-1][2] == f:
            out[-1] = (out[-1][0], t + 1, f)
        else:
            out.append((t, t + 1, f))
    return tuple(out)


def model_apply(model: dict[int, int], new: list[tuple[int, int]], fetched_at: int):
    result, taken = dict(model), set()
    for s, e in new:
        for t in range(s, e):
            if t not in model or model[t] <= fetched_at:
                result[t] = fetched_at
                taken.add(t)
    return result, runs(taken)


def model_due(model, lo, hi, *, as_of, settle, refresh, batch=1) -> list[tuple[int, int]]:
    due = set()
    settled_now = (as_of - settle) // batch * batch  # whole batches of seconds settle at once
    for t in range(lo, min(hi, as_of)):
        if t not in model:
            due.add(t)
            continue
        f = model[t]
        if f >= as_of or t < f - settle:  # newer than this run, or settled: leave alone
            continue
        if t < settled_now or (refresh is not None and as_of - f >= refresh):
            due.add(t)
    return runs(due)


# --- random coverage ------------------------------------------------------------------------


def random_ranges(rng: random.Random, n_max: int = 4) -> list[tuple[int, int]]:
    out = []
    for _ in range(rng.randint(0, n_max)):
        s = rng.randrange(AXIS)
        out.append((s, rng.randint(s, AXIS)))
    return out


def random_coverage(rng: random.Random) -> Coverage:
    """Built through apply, so it exercises apply too; fetched_at values collide on purpose."""
    coverage = Coverage()
    for _ in range(rng.randint(0, 4)):
        coverage, _ = coverage.apply(random_ranges(rng), rng.randint(20, 70))
    return coverage


def cases():
    rng = random.Random(20260101)
    for _ in range(CASES):
        yield rng, random_coverage(rng)


# --- properties -----------------------------------------------------------------------------


def test_coverage_is_canonical_and_round_trips_json():
    for _rng, coverage in cases():
        assert coverage.intervals == intervals_of(model_of(coverage))
        assert Coverage.from_json(coverage.to_json()) == coverage
        assert Coverage.from_json(coverage.to_json().encode()) == coverage


def test_apply_matches_model():
    for rng, coverage in cases():
        new, fetched_at = random_ranges(rng), rng.randint(20, 70)
        result, taken = coverage.apply(new, fetched_at)
        expected_model, expected_taken = model_apply(model_of(coverage), new, fetched_at)
        assert taken == expected_taken
        assert result.intervals == intervals_of(expected_model)


def test_uncovered_matches_model():
    for rng, coverage in cases():
        lo = rng.randrange(AXIS)
        hi = rng.randint(lo, AXIS)
        covered = model_of(coverage)
        assert coverage.uncovered(lo, hi) == runs({t for t in range(lo, hi) if t not in covered})


def test_due_for_refetch_matches_model():
    for rng, coverage in cases():
        lo = rng.randrange(AXIS)
        hi = rng.randint(lo, AXIS)
        as_of = rng.randint(0, 90)
        settle = rng.randint(0, 30)
        refresh = rng.choice([None, rng.randint(0, 30)])
        batch = rng.choice([1, 1, rng.randint(2, 12)])
        got = coverage.due_for_refetch(
            lo, hi, as_of=as_of, settle=settle, refresh=refresh, batch=batch
        )
        want = model_due(
            model_of(coverage), lo, hi, as_of=as_of, settle=settle, refresh=refresh, batch=batch
        )
        assert got == want, (coverage, lo, hi, as_of, settle, refresh, batch)


def test_is_settled_matches_model():
    for rng, coverage in cases():
        lo = rng.randrange(AXIS)
        hi = rng.randint(lo, AXIS)
        settle = rng.randint(0, 30)
        model = model_of(coverage)
        want = all(t in model and t < model[t] - settle for t in range(lo, hi))
        assert coverage.is_settled(lo, hi, settle=settle) is want


def test_fetching_what_is_due_then_nothing_is_due_until_time_passes():
    """Closing the loop the DAG runs: apply(due) at as_of leaves nothing due at as_of."""
    for rng, coverage in cases():
        as_of = rng.randint(40, 90)
        settle, refresh = rng.randint(0, 30), rng.choice([None, rng.randint(1, 30)])
        rule = {"as_of": as_of, "settle": settle, "refresh": refresh, "batch": rng.randint(1, 9)}
        due = coverage.due_for_refetch(0, AXIS, **rule)
        after, taken = coverage.apply(due, as_of)
        assert taken == merge_ranges(due)  # due never includes a part fetched at/after as_of
        assert after.due_for_refetch(0, AXIS, **rule) == []


# --- concrete cases that document the rules -------------------------------------------------

DAY = 1_767_225_600  # 2026-01-01T00:00:00Z
H = 3600
SETTLE = 25 * H


def test_first_fetch_takes_everything_and_records_it():
    coverage, taken = Coverage().apply([(DAY, DAY + 6 * H)], DAY + 7 * H)
    assert taken == [(DAY, DAY + 6 * H)]
    assert coverage.intervals == ((DAY, DAY + 6 * H, DAY + 7 * H),)


def test_older_fetch_never_overwrites_newer():
    newer, _ = Coverage().apply([(DAY, DAY + 10)], DAY + 100)
    after, taken = newer.apply([(DAY - 5, DAY + 20)], DAY + 50)
    assert taken == [(DAY - 5, DAY), (DAY + 10, DAY + 20)]
    assert after.intervals == (
        (DAY - 5, DAY, DAY + 50),
        (DAY, DAY + 10, DAY + 100),
        (DAY + 10, DAY + 20, DAY + 50),
    )


def test_same_fetched_at_is_taken_again_so_a_retry_replaces_its_rows():
    once, _ = Coverage().apply([(DAY, DAY + 10)], DAY + 100)
    again, taken = once.apply([(DAY, DAY + 10)], DAY + 100)
    assert taken == [(DAY, DAY + 10)]
    assert again == once


def test_unsettled_tail_becomes_due_once_it_can_be_fetched_settled():
    fetched_at = DAY + 24 * H  # the whole day fetched right at its end: all of it unsettled
    coverage, _ = Coverage().apply([(DAY, DAY + 24 * H)], fetched_at)
    assert (
        coverage.due_for_refetch(DAY, DAY + 24 * H, as_of=DAY + 25 * H, settle=SETTLE, refresh=None)
        == []
    )
    # at day+31h the first 6 hours are 25 h old: fetch them now and they are final
    due = coverage.due_for_refetch(
        DAY, DAY + 24 * H, as_of=DAY + 31 * H, settle=SETTLE, refresh=None
    )
    assert due == [(DAY, DAY + 6 * H)]
    # with refresh=6h, the whole unsettled tail is due again as soon as it is 6 h old
    due = coverage.due_for_refetch(
        DAY, DAY + 24 * H, as_of=DAY + 30 * H, settle=SETTLE, refresh=6 * H
    )
    assert due == [(DAY, DAY + 24 * H)]


def test_settled_interval_is_final():
    coverage, _ = Coverage().apply([(DAY, DAY + 24 * H)], DAY + 24 * H + SETTLE)
    assert coverage.is_settled(DAY, DAY + 24 * H, settle=SETTLE)
    assert (
        coverage.due_for_refetch(DAY, DAY + 24 * H, as_of=DAY + 400 * H, settle=SETTLE, refresh=H)
        == []
    )


def test_replay_of_older_run_finds_nothing_due_in_newer_data():
    coverage, _ = Coverage().apply([(DAY, DAY + 12 * H)], DAY + 40 * H)
    assert coverage.due_for_refetch(
        DAY, DAY + 24 * H, as_of=DAY + 20 * H, settle=SETTLE, refresh=0
    ) == [(DAY + 12 * H, DAY + 20 * H)]  # only the uncovered part before as_of


def test_due_is_clipped_to_before_as_of():
    assert Coverage().due_for_refetch(
        DAY, DAY + 24 * H, as_of=DAY + H, settle=SETTLE, refresh=None
    ) == [(DAY, DAY + H)]
    assert (
        Coverage().due_for_refetch(DAY, DAY + 10, as_of=DAY - 1, settle=SETTLE, refresh=None) == []
    )


@pytest.mark.parametrize(
    "intervals",
    [
        ((0, 10, 5), (5, 20, 5)),  # overlap
        ((10, 20, 5), (0, 5, 5)),  # unsorted
        ((3, 3, 5),),  # empty
        ((5, 3, 5),),  # reversed
        ((0, 1.5, 5),),  # not an int
    ],
)
def test_invalid_coverage_is_refused(intervals):
    with pytest.raises((ValueError, TypeError)):
        Coverage(intervals)


def test_from_json_refuses_garbage():
    for text in ['{"a": 1}', "[[1, 2]]", '[[0, 10, "x"]]', "[[0, 10, 5], [5, 20, 5]]"]:
        with pytest.raises((ValueError, TypeError)):
            Coverage.from_json(text)


def test_constructor_joins_adjacent_equal_fetches():
    assert Coverage(((0, 5, 9), (5, 10, 9), (10, 12, 8))).intervals == ((0, 10, 9), (10, 12, 8))
    assert Coverage.of([[10, 12, 8], [0, 5, 9], [5, 10, 9]]).to_json() == "[[0,10,9],[10,12,8]]"


def test_settling_in_hour_batches_fetches_an_hour_once_it_is_all_old_enough():
    """Pieces fetched every few minutes settle together: nothing of an hour is due until the
    whole hour is `settle` old, then the hour is one range (one fetch)."""
    pieces = [(DAY + m * 60, DAY + (m + 4) * 60, DAY + (m + 4) * 60) for m in range(0, 120, 4)]
    coverage = Coverage.of(pieces)
    rule = {"settle": SETTLE, "refresh": None, "batch": H}
    for minute in range(0, 60, 4):  # the first hour is ever more settled, but not all of it
        as_of = DAY + H + SETTLE - H + minute * 60
        assert coverage.due_for_refetch(DAY, DAY + 2 * H, as_of=as_of, **rule) == []
    as_of = DAY + H + SETTLE
    assert coverage.due_for_refetch(DAY, DAY + 2 * H, as_of=as_of, **rule) == [(DAY, DAY + H)]
    with pytest.raises(ValueError, match="batch"):
        coverage.due_for_refetch(DAY, DAY + H, as_of=as_of, settle=SETTLE, refresh=None, batch=0)
