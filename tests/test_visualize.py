"""Tests for kerasvision.visualize: palettes, overlays and PNG figures."""

import numpy as np
import pytest
from PIL import Image

from kerasvision import visualize
from kerasvision.validation import IGNORE_LABEL

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, max_kb=300):
    """The file is a readable PNG of reasonable size; returns (width, height)."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        size = image.size
    assert 0 < len(open(path, "rb").read()) < max_kb * 1024
    return size


def _examples(n=3, size=16, num_classes=3):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
    masks = rng.integers(0, num_classes, (n, size, size))
    return images, masks


def test_class_palette_distinct_and_dark_background():
    palette = visualize.class_palette(30)
    assert palette.shape == (30, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 30
    brightness = palette.astype(int).sum(axis=1)
    assert brightness[0] == brightness.min() and brightness[0] < 100
    with pytest.raises(ValueError, match="num_classes"):
        visualize.class_palette(0)


def test_overlay_mask_blends_foreground_only():
    image = np.full((4, 5, 3), 100, dtype=np.uint8)
    mask = np.zeros((4, 5), dtype=np.int32)
    mask[0, 0] = 1
    mask[1, 1] = IGNORE_LABEL
    out = visualize.overlay_mask(image, mask, alpha=0.5, num_classes=3)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    colour = visualize.class_palette(3)[1].astype(float)
    np.testing.assert_allclose(out[0, 0], np.rint(0.5 * 100 + 0.5 * colour), atol=1)
    np.testing.assert_allclose(out[1, 1], [178, 178, 178], atol=1)  # halfway to white
    np.testing.assert_array_equal(visualize.overlay_mask(image, mask, alpha=0.0), image)


def test_overlay_mask_bad_inputs():
    with pytest.raises(ValueError, match="`mask`.*height and width"):
        visualize.overlay_mask(np.zeros((4, 4, 3)), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="`image`"):
        visualize.overlay_mask(np.zeros((4, 4, 2)), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay_mask(np.zeros((4, 4, 3)), np.zeros((4, 4), int), alpha=2.0)


def test_plot_segmentation_examples(tmp_path):
    images, masks = _examples()
    probabilities = np.random.default_rng(1).random((3, 16, 16, 3))
    path = visualize.plot_segmentation_examples(
        images, masks, probabilities, ["background", "a", "b"], tmp_path / "sub" / "seg.png")
    assert path == str(tmp_path / "sub" / "seg.png")
    width, height = _check_png(path)
    # Four panels of 16 px tiles enlarged 10x (to >= 160 px), three rows plus titles and legend.
    assert width >= 4 * 160 and height >= 3 * 160

    truth_only = visualize.plot_segmentation_examples(
        images, masks, None, ["background", "a", "b"], tmp_path / "gt.png", max_examples=1)
    width2, height2 = _check_png(truth_only)
    assert width2 >= 2 * 160 and width2 < width and height2 < height


def test_colour_mask_uses_the_legend_palette():
    mask = np.array([[0, 1], [2, 255]])
    painted = visualize.colour_mask(mask, 3)
    palette = visualize.class_palette(3)
    np.testing.assert_array_equal(painted[0, 0], palette[0])
    np.testing.assert_array_equal(painted[0, 1], palette[1])
    np.testing.assert_array_equal(painted[1, 0], palette[2])
    np.testing.assert_array_equal(painted[1, 1], [255, 255, 255])


def test_outline_mask_marks_only_object_boundaries():
    image = np.full((6, 6, 3), 100, np.uint8)
    mask = np.zeros((6, 6), int)
    mask[1:5, 1:5] = 1  # a 4x4 square: its 12 border pixels are the outline
    out = visualize.outline_mask(image, mask, 2)
    changed = np.any(out != image, axis=-1)
    expected = np.zeros((6, 6), bool)
    expected[1:5, 1:5] = True
    expected[2:4, 2:4] = False
    np.testing.assert_array_equal(changed, expected)
    np.testing.assert_array_equal(out[1, 1], visualize.class_palette(2)[1])


def test_image_mean_iou_by_hand():
    truth = np.array([[0, 0, 1, 1]])
    predicted = np.array([[0, 1, 1, 1]])
    # background: 1 / 2; class 1: 2 / 3; class 2 absent from both, not counted.
    assert visualize.image_mean_iou(truth, predicted, 3) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert visualize.image_mean_iou(np.array([[255, 1]]), np.array([[0, 1]]), 2) == 1.0


def test_plot_segmentation_examples_bad_inputs(tmp_path):
    images, masks = _examples()
    with pytest.raises(ValueError, match="`images`"):
        visualize.plot_segmentation_examples(images[0], masks, None, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="`masks_pred`.*one mask per image"):
        visualize.plot_segmentation_examples(images, masks, masks[:2], ["a", "b"],
                                             tmp_path / "x.png")


def test_plot_history(tmp_path):
    history = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7],
               "mean_iou": [0.2, 0.4, 0.5], "val_mean_iou": [0.1, 0.3, 0.4],
               "learning_rate": [1e-3, 1e-3, 5e-4]}
    width, height = _check_png(visualize.plot_history(history, tmp_path / "history.png"))
    assert width > height  # three panels side by side

    class FakeHistory:  # keras.callbacks.History exposes `.history`
        history = {"loss": [0.5], "val_loss": [0.6]}

    _check_png(visualize.plot_history(FakeHistory(), tmp_path / "h2.png"))
    with pytest.raises(ValueError, match="history_dict"):
        visualize.plot_history({}, tmp_path / "h3.png")


def test_plot_image_grid(tmp_path):
    samples = np.random.default_rng(0).uniform(-1, 1, (10, 12, 12, 1))
    path = visualize.plot_image_grid(samples, tmp_path / "grid.png", nrows=2,
                                     title="samples", value_range=(-1, 1))
    width, height = _check_png(path)
    assert width > height  # 2 rows x 5 columns
    _check_png(visualize.plot_image_grid(samples[..., 0] * 127 + 128, tmp_path / "gray.png"))
    with pytest.raises(ValueError, match="value_range"):
        visualize.plot_image_grid(samples, tmp_path / "bad.png", value_range=(1, 1))


def test_plot_confusion_matrix(tmp_path):
    cm = np.array([[50, 2, 1], [3, 40, 7], [0, 5, 30]])
    _check_png(visualize.plot_confusion_matrix(cm, ["bg", "cat", "dog"], tmp_path / "cm.png"))
    _check_png(visualize.plot_confusion_matrix(cm, ["bg", "cat", "dog"], tmp_path / "cm2.png",
                                               normalize=False))
    with pytest.raises(ValueError, match="class_names"):
        visualize.plot_confusion_matrix(cm, ["bg", "cat"], tmp_path / "cm3.png")
    with pytest.raises(ValueError, match="`cm`"):
        visualize.plot_confusion_matrix(cm[:2], ["bg", "cat"], tmp_path / "cm4.png")
