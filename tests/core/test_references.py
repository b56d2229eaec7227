"""Reference preparation: the official area-resize size, compositing on white, channel handling, errors."""

import math

import pytest
import torch

from dreamo_core.conditioning.reference_images import area_resize_size, prepare_reference, to_model_range


def official_size(h: int, w: int, ref_res: int) -> tuple[int, int]:
    """``resize_numpy_image_area(img, ref_res * ref_res)`` of the official utils, written out again."""
    k = math.sqrt(ref_res * ref_res / (h * w))
    nh, nw = int(h * k), int(w * k)
    return nh - nh % 16, nw - nw % 16


@pytest.mark.parametrize(
    "h, w, ref_res, expected",
    [
        # 1000x750 @512: k = sqrt(512^2 / 750000) = 0.59121; 591.2 -> 591 -> 576, 443.4 -> 443 -> 432
        (1000, 750, 512, (576, 432)),
        # upscale: 300x400 @512: k = 1.47802; 443.4 -> 432, 591.2 -> 576
        (300, 400, 512, (432, 576)),
        (512, 512, 512, (512, 512)),
        # 1080x1920 @768: k = 0.53333; 576.0 -> 576, 1024.0 -> 1024
        (1080, 1920, 768, (576, 1024)),
        # 640x480 @1024: k = 1.84752; 1182.4 -> 1168, 886.8 -> 880
        (640, 480, 1024, (1168, 880)),
        (2000, 500, 512, (1024, 256)),
    ],
)
def test_area_resize_size_matches_official_formula(h, w, ref_res, expected):
    assert official_size(h, w, ref_res) == expected
    assert area_resize_size(h, w, ref_res) == expected


@pytest.mark.parametrize("h, w, ref_res", [(1000, 750, 512), (300, 400, 512), (37, 91, 256), (720, 1280, 1024)])
def test_prepared_sizes_are_official_and_multiples_of_16(h, w, ref_res):
    ref = prepare_reference(torch.rand(h, w, 3), "ip", ref_res)
    assert tuple(ref.pixels.shape) == (*official_size(h, w, ref_res), 3)
    assert ref.pixels.shape[0] % 16 == 0 and ref.pixels.shape[1] % 16 == 0
    assert ref.token_grid == (ref.pixels.shape[0] // 16, ref.pixels.shape[1] // 16)
    assert 0.0 <= ref.pixels.min() and ref.pixels.max() <= 1.0


def test_style_uses_the_same_resize_as_ip():
    img = torch.rand(200, 330, 3)
    assert torch.equal(prepare_reference(img, "style", 256).pixels, prepare_reference(img, "ip", 256).pixels)


@pytest.mark.parametrize("h, w, ref_res, factor", [(1024, 1024, 512, 2), (1024, 256, 256, 2), (1024, 1024, 256, 4)])
def test_area_downscale_by_integer_factor_is_block_average(h, w, ref_res, factor):
    img = torch.rand(h, w, 3, generator=torch.Generator().manual_seed(1))
    ref = prepare_reference(img, "ip", ref_res)
    blocks = img.reshape(h // factor, factor, w // factor, factor, 3).mean(dim=(1, 3))
    assert ref.pixels.shape == blocks.shape
    torch.testing.assert_close(ref.pixels, blocks, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ref_res", [256, 512, 1024])
def test_id_task_is_a_512_centre_crop_whatever_ref_res(ref_res):
    img = torch.rand(1024, 512, 3)  # centre square: rows 256..767, already 512x512 so no resampling
    ref = prepare_reference(img, "id", ref_res)
    assert ref.pixels.shape == (512, 512, 3)
    assert torch.equal(ref.pixels, img[256:768])
    assert prepare_reference(torch.rand(300, 700, 3), "id", ref_res).pixels.shape == (512, 512, 3)


def test_mask_composites_exactly_on_white():
    img = torch.rand(512, 512, 3)
    mask = torch.zeros(512, 512)
    mask[100:300, 50:400] = 1.0
    mask[0, 0] = 0.5
    px = prepare_reference(img, "ip", 512, mask=mask).pixels
    keep = mask == 1.0
    back = mask == 0.0
    assert torch.equal(px[keep], img[keep])
    assert (px[back] == 1.0).all()
    assert torch.allclose(px[0, 0], img[0, 0] * 0.5 + 0.5)


def test_rgba_alpha_is_the_foreground_and_a_mask_overrides_it():
    img = torch.rand(512, 512, 4)
    img[..., 3] = 0.0
    img[:256, :, 3] = 1.0
    px = prepare_reference(img, "ip", 512).pixels
    assert torch.equal(px[:256], img[:256, :, :3])
    assert (px[256:] == 1.0).all()
    everything = prepare_reference(img, "ip", 512, mask=torch.ones(512, 512)).pixels
    assert torch.equal(everything, img[..., :3])


def test_mask_of_another_size_is_resized():
    img = torch.rand(512, 512, 3)
    mask = torch.zeros(1, 64, 64)
    mask[:, :32] = 1.0  # top half
    px = prepare_reference(img, "ip", 512, mask=mask).pixels
    assert torch.equal(px[:200], img[:200])
    assert (px[300:] == 1.0).all()


@pytest.mark.parametrize("shape", [(512, 512), (512, 512, 1)])
def test_grayscale_gives_three_equal_channels(shape):
    gray = torch.rand(*shape)
    px = prepare_reference(gray, "style", 512).pixels
    assert px.shape == (512, 512, 3)
    flat = gray.reshape(512, 512)
    for c in range(3):
        assert torch.equal(px[..., c], flat)


def test_uint8_is_divided_by_255():
    img = torch.randint(0, 256, (512, 512, 3), dtype=torch.uint8)
    img[0, 0] = torch.tensor([0, 255, 51], dtype=torch.uint8)
    px = prepare_reference(img, "ip", 512).pixels
    assert px.dtype == torch.float32
    assert torch.equal(px, img.float() / 255.0)
    assert px[0, 0].tolist() == [0.0, 1.0, pytest.approx(0.2)]


def test_values_outside_0_1_are_clamped():
    img = torch.full((512, 512, 3), 2.0)
    img[0] = -1.0
    px = prepare_reference(img, "ip", 512).pixels
    assert px.min() == 0.0 and px.max() == 1.0


def test_to_model_range_layout_and_values():
    px = torch.zeros(32, 48, 3)
    px[..., 1] = 1.0
    px[5, 7, 2] = 0.25
    x = to_model_range(px)
    assert x.shape == (1, 3, 32, 48)
    assert (x[0, 0] == -1.0).all() and (x[0, 1] == 1.0).all()
    assert x[0, 2, 5, 7] == -0.5 and x[0, 2, 0, 0] == -1.0


@pytest.mark.parametrize(
    "image, message",
    [
        (torch.rand(15, 100, 3), r"image: 100x15 is too small; a reference needs at least 16 pixels per side"),
        (torch.rand(16385, 16, 1), r"image: 16x16385 is too large; downscale it below 16384 pixels per side"),
        (torch.rand(64, 64, 2), r"image: expected shape \(H, W, C\) with C in 1, 3 or 4 .*got \(64, 64, 2\)"),
        (torch.rand(1, 64, 64, 3), r"image: expected shape \(H, W, C\) .*got \(1, 64, 64, 3\)"),
        (torch.rand(64), r"image: expected shape \(H, W, C\) .*got \(64,\)"),
        (torch.zeros(64, 64, 3, dtype=torch.int32), r"image: expected float pixels in \[0, 1\] or uint8, got dtype torch\.int32"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        prepare_reference(image, "ip", 512)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_images(bad):
    img = torch.rand(64, 64, 3)
    img[3, 4, 1] = bad
    with pytest.raises(ValueError, match=r"image: contains NaN or infinite values"):
        prepare_reference(img, "ip", 512)


def test_non_tensor_image():
    with pytest.raises(TypeError, match=r"image: expected a torch\.Tensor \(H, W, C\) in \[0, 1\], got list"):
        prepare_reference([[0.0]], "ip", 512)  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["tryon", "IP", "", None])
def test_bad_task(task):
    with pytest.raises(ValueError, match=r"task must be one of ip, id, style .*got"):
        prepare_reference(torch.rand(64, 64, 3), task, 512)


@pytest.mark.parametrize("ref_res", [500, 48, 2064, 512.0, "512"])
def test_bad_ref_res(ref_res):
    with pytest.raises(ValueError, match=r"ref_res must be a multiple of 16 between 64 and 2048, got"):
        prepare_reference(torch.rand(64, 64, 3), "ip", ref_res)


def test_extreme_aspect_ratio():
    # 16384x16 @256: k = 0.5 -> height 8 px -> floors to 0
    with pytest.raises(ValueError, match=r"16384x16 \(w x h\) has an aspect ratio too extreme for ref_res=256"):
        prepare_reference(torch.rand(16, 16384, 1), "ip", 256)


def test_messages_call_the_size_by_the_callers_name():
    """The node's input is ``resolution``: its messages must not say ``ref_res``."""
    with pytest.raises(ValueError, match=r"too extreme for resolution=256: it would become 8192x0; crop it or raise "
                                         r"resolution$"):
        prepare_reference(torch.rand(16, 16384, 1), "ip", 256, size_name="resolution")
    with pytest.raises(ValueError, match=r"^resolution must be a multiple of 16 between 64 and 2048, got 500"):
        prepare_reference(torch.rand(64, 64, 3), "ip", 500, size_name="resolution")


@pytest.mark.parametrize("mask, message", [
    (torch.ones(2, 512, 512), r"mask: expected a \(H, W\) foreground mask, got shape \(2, 512, 512\)"),
    (torch.full((512, 512), float("nan")), r"mask: contains NaN or infinite values"),
])
def test_bad_masks(mask, message):
    with pytest.raises(ValueError, match=message):
        prepare_reference(torch.rand(512, 512, 3), "ip", 512, mask=mask)


@pytest.mark.parametrize("fill", [0.0, 1.0 / 512])
def test_mask_that_selects_nothing_is_an_error(fill):
    from dreamo_core.conditioning.reference_images import EmptyForegroundError

    img = torch.rand(64, 64, 3)
    mask = torch.full((64, 64), fill)
    with pytest.raises(EmptyForegroundError, match=r"mask selects nothing \(largest value [0-9.e-]+; 1 = keep\), "
                                                   r"so the whole reference would be white"):
        prepare_reference(img, "ip", 256, mask=mask)
    mask[10, 10] = 1.0  # one kept pixel is a (tiny) foreground: no error
    px = prepare_reference(img, "ip", 256, mask=mask).pixels
    assert px.min() < 1.0


def test_fully_transparent_rgba_is_an_error():
    img = torch.rand(64, 64, 4)
    img[..., 3] = 0.0
    with pytest.raises(ValueError, match=r"image alpha channel selects nothing"):
        prepare_reference(img, "ip", 256)
