"""Tests of the argument checks shared by the demo generators."""

from __future__ import annotations

import pytest

from pipelines.data import (
    make_brats_demo,
    make_busi_demo,
    make_chestxray14_demo,
    make_hvsmr_demo,
    make_malc_demo,
)


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (make_brats_demo, {"shape": (8, 64, 64)}),
        (make_brats_demo, {"num_cases": 0}),
        (make_malc_demo, {"shape": (32, 32)}),
        (make_busi_demo, {"size": 8}),
        (make_chestxray14_demo, {"num_patients": 0}),
        (make_hvsmr_demo, {"seed": -1}),
    ],
)
def test_bad_arguments(make, kwargs, tmp_path):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make(str(tmp_path), **kwargs)
