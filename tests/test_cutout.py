"""plain_background_mask against shapes drawn on a plain background, where the mask is known exactly."""

import numpy as np
import pytest

from zfkit.cutout import plain_background_mask


def _photo(background=(250, 250, 250)) -> tuple[np.ndarray, np.ndarray]:
    image = np.empty((60, 80, 3), np.uint8)
    image[:] = background
    truth = np.zeros((60, 80), bool)
    truth[10:30, 8:40] = True  # a red block with a white window in it
    truth[40:55, 50:75] = True  # a second, darker part: two tools in one photo
    image[10:30, 8:40] = (200, 30, 20)
    image[15:20, 15:25] = background
    image[40:55, 50:75] = (20, 60, 90)
    return image, truth


def test_the_object_is_everything_not_connected_to_the_border():
    image, truth = _photo()
    assert np.array_equal(plain_background_mask(image), truth)  # the enclosed white window counts as object


def test_noise_within_the_tolerance_and_a_speck_stay_background():
    image, truth = _photo()
    rng = np.random.default_rng(0)
    noisy = np.clip(image.astype(int) + rng.integers(-10, 11, image.shape) * ~truth[..., None], 0, 255).astype(np.uint8)
    noisy[3, 60] = (0, 0, 0)  # one dark pixel in the background: the one-pixel opening removes it
    assert np.array_equal(plain_background_mask(noisy, tolerance=24), truth)


def test_small_parts_below_min_part_are_dropped():
    image, truth = _photo()
    image[50:53, 5:8] = (0, 0, 0)  # a 3x3 crumb: 9 pixels against the largest part's 640
    assert np.array_equal(plain_background_mask(image), truth)
    assert plain_background_mask(image, min_part=0.6)[40:55, 50:75].sum() == 0  # 375 < 0.6 x 640


def test_a_photo_without_a_plain_border_is_refused():
    image, _ = _photo()
    image[:, :40] = (0, 120, 0)  # half the frame is a green wall
    with pytest.raises(ValueError, match="no plain background"):
        plain_background_mask(image)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        plain_background_mask(image[..., 0])
