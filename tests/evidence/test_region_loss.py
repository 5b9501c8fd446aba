"""Half a simulated day with a region loss (bench/simulation.py, seeded): the primary region out
of reach for two hours, the replica stack promoted fifteen minutes in, then the old primary back
on its schedule. Callers that report run it twice: listing both brokers, and the primary's alone.
The full week runs in `make bench`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.simulation import DAY, RegionLoss, Report, Scenario, region_loss

pytestmark = pytest.mark.timeout(300)

LOSS = RegionLoss(at=0.1 * DAY, duration=2 * 3600, promote_after=15 * 60)
HALF_DAY = Scenario(days=0.5, seed=11, region_loss=LOSS, token_revocations_per_day=2)


@dataclass(frozen=True)
class Runs:
    two_brokers: Report
    one_broker: Report


@pytest.fixture(scope="module")
def runs() -> Runs:
    two, one = region_loss(HALF_DAY)
    return Runs(two, one)


def test_callers_listing_two_brokers_are_served_through_the_loss(runs: Runs) -> None:
    # Given the primary region lost for two hours, When callers list both brokers,
    # Then the replica's broker serves them throughout: the replicated token, then its own
    report = runs.two_brokers
    assert report.requests_in_region_loss == 240
    assert report.served_in_region_loss >= 0.99 * report.requests_in_region_loss
    assert report.of_limit >= 0.999


def test_callers_listing_the_primary_alone_go_unserved_for_the_whole_loss(runs: Runs) -> None:
    # Given the same loss, When callers list only the primary's broker, Then none is served
    # while it lasts
    report = runs.one_broker
    assert report.requests_in_region_loss == 240
    assert report.served_in_region_loss == 0
    assert report.first_token_from_new_primary is None


def test_the_new_primarys_first_token_reaches_callers_right_after_the_promotion(
    runs: Runs,
) -> None:
    # Given the promotion fifteen minutes into the loss, Then the next request is served a token
    # the new primary made (callers ask every 30 s)
    first = runs.two_brokers.first_token_from_new_primary
    assert first is not None
    assert LOSS.promote_after <= first <= LOSS.promote_after + 30


def test_the_old_primary_back_mints_no_token_and_none_of_its_later_ones_is_served(
    runs: Runs,
) -> None:
    # Given the old primary region back on its schedule after the promotion, Then its refresher
    # finds it was superseded and mints nothing, so no caller is served a token of its
    for report in (runs.two_brokers, runs.one_broker):
        assert report.minted_by_lost_primary_after_promotion == 0
        assert report.served_minted_by_lost_primary == 0
        assert report.final_token_valid
