"""Option checks at the boundary: non-finite numbers and out-of-range counts are one InputError each."""

from __future__ import annotations

import math

import pytest

from latentkit.checks import check_count, check_number
from latentkit.errors import InputError
from latentkit.latent.sampling import parse_seeds
from latentkit.projection.state import ProjectionSettings


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1", True, None])
def test_check_number_refuses_non_finite_and_non_numbers(value):
    with pytest.raises(InputError, match="prior_weight"):
        check_number(value, "prior_weight", lo=0)


def test_check_number_ranges():
    assert check_number(0, "x", lo=0) == 0.0
    with pytest.raises(InputError, match=r"x must be in \(0"):
        check_number(0, "x", lo=0, lo_open=True)
    with pytest.raises(InputError, match=r"must be in \[0, 1\]"):
        check_number(2, "x", lo=0, hi=1)


def test_check_count():
    assert check_count(5, "n", limit=10) == 5
    with pytest.raises(InputError, match=r"n is 11, it must be in \[0, 10\]"):
        check_count(11, "n", limit=10)
    with pytest.raises(InputError, match="integer"):
        check_count(1.5, "n", limit=10)


@pytest.mark.parametrize("field", ["prior_weight", "mse_weight", "learning_rate", "regularize_noise_weight",
                                   "initial_noise_factor"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_projection_settings_refuse_non_finite_weights(field, value):
    with pytest.raises(InputError, match=f"{field} must be a finite number"):
        ProjectionSettings(**{field: value})


def test_projection_settings_betas():
    with pytest.raises(InputError, match="betas"):
        ProjectionSettings(betas=(0.9, math.nan))


def test_seed_count_limit_names_the_number():
    assert parse_seeds("0-9") == list(range(10))
    with pytest.raises(InputError, match=r"100,000,000\+ seeds, more than the limit of 100,000"):
        parse_seeds("0-99999999")
    with pytest.raises(InputError, match="limit of 5"):
        parse_seeds("0-3,7-9", limit=5)
    with pytest.raises(InputError, match="out of range"):
        parse_seeds("0-99999999999", limit=10**12)
