"""dreamo_core.weights.lora_shapes: the delta shape of a LoRA module and whether it fits its target weight."""

import pytest
import torch

from dreamo_core.weights.lora_shapes import delta_fits, lora_delta_shape, lora_shape_mismatches, sliced_shape


def test_delta_shapes_of_every_pair_layout():
    sd = {"a.lora_up.weight": torch.zeros(96, 4), "a.lora_down.weight": torch.zeros(4, 32),
          "b.lora_B.weight": torch.zeros(32, 8), "b.lora_A.weight": torch.zeros(8, 160),
          "c.lora_B.default.weight": torch.zeros(5, 2), "c.lora_A.default.weight": torch.zeros(2, 7),
          "d.lora_up.weight": torch.zeros(16, 4, 1, 1), "d.lora_down.weight": torch.zeros(4, 8, 1, 1),
          "d.lora_mid.weight": torch.zeros(4, 4, 3, 3), "e.lora_up.weight": torch.zeros(3, 1)}
    assert lora_delta_shape(sd, "a") == (96, 32)
    assert lora_delta_shape(sd, "b") == (32, 160)
    assert lora_delta_shape(sd, "c") == (5, 7)
    assert lora_delta_shape(sd, "d") == (16, 8, 3, 3)
    assert lora_delta_shape(sd, "e") is None  # no down matrix: not judged here (the pair check reports it)


@pytest.mark.parametrize(("delta", "target", "fits"), [
    ((96, 32), (96, 32), True), ((32, 96), (96, 32), False), ((96, 16), (96, 32), False),
    ((16, 8), (16, 8, 1, 1), True), ((16, 8), (16, 2, 2, 2), True), ((8, 16), (16, 8, 1, 1), False),
])
def test_delta_fits_as_comfyui_reshapes_it(delta, target, fits):
    assert delta_fits(delta, target) is fits


def test_slices_and_unknown_targets():
    assert sliced_shape((896, 128), (0, 0, 384)) == (384, 128)
    assert sliced_shape((896, 128), None) == (896, 128)
    sd = {"q.lora_up.weight": torch.zeros(384, 4), "q.lora_down.weight": torch.zeros(4, 128),
          "p.lora_up.weight": torch.zeros(128, 4), "p.lora_down.weight": torch.zeros(4, 64)}
    targets = {"q": sliced_shape((896, 128), (0, 0, 384)), "p": (128, 128)}
    assert lora_shape_mismatches(sd, targets) == [("p", (128, 64), (128, 128))]
    assert lora_shape_mismatches(sd, {"q": (896, 128), "p": None}) == [("q", (384, 128), (896, 128))]
