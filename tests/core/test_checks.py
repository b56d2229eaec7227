"""dreamo_core.checks: finite numbers and tensors; the controls that use them refuse NaN/inf."""

import math

import pytest
import torch

from dreamo_core.checks import check_finite_tensors, finite_number, non_finite_count
from dreamo_core.conditioning.placement import Box
from dreamo_core.conditioning.reference_strength import check_percent_range


@pytest.mark.parametrize("value", [0, 1.5, -3, 10.0])
def test_finite_numbers_pass_as_floats(value):
    out = finite_number(value, "x")
    assert out == value and isinstance(out, float)


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), r"strength must be a finite number, got nan"),
    (float("inf"), r"strength must be a finite number, got inf"),
    (-math.inf, r"strength must be a finite number, got -inf"),
    (True, r"strength must be a number, got bool"),
    ("1.0", r"strength must be a number, got str"),
    (None, r"strength must be a number, got NoneType"),
    (11.0, r"strength must be between -10 and 10, got 11.0"),
])
def test_bad_numbers_name_the_input(value, message):
    with pytest.raises(ValueError, match=message):
        finite_number(value, "strength", -10, 10)


def test_non_finite_count_all_float_dtypes():
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float8_e5m2):
        t = torch.zeros(4, 5).to(dtype)
        assert non_finite_count(t) == 0
        t[0, 1] = float("nan")
        t[2, 3] = float("inf")
        assert non_finite_count(t) == 2, dtype
    assert non_finite_count(torch.arange(5)) == 0
    with pytest.raises(ValueError, match=r"f\.safetensors: b \(2,\) contains 1 NaN/infinite value\(s\)"):
        check_finite_tensors({"a": torch.zeros(3), "b": torch.tensor([1.0, math.nan])}, "f.safetensors")


@pytest.mark.parametrize("field", ["x", "y", "w", "h"])
def test_box_refuses_nan(field):
    values = dict(x=0.0, y=0.0, w=0.5, h=0.5)
    Box(**values)
    values[field] = float("nan")
    with pytest.raises(ValueError, match=f"box {field} must be a finite number, got nan"):
        Box(**values)


@pytest.mark.parametrize(("start", "end", "name"), [(math.nan, 1.0, "start_percent"), (0.0, math.nan, "end_percent")])
def test_percent_range_refuses_nan(start, end, name):
    check_percent_range(0.0, 1.0, "Node")
    with pytest.raises(ValueError, match=f"Node: {name} must be a finite number, got nan"):
        check_percent_range(start, end, "Node")
