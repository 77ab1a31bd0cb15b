"""Figures for segmentation results, training curves and generated samples.

Every `plot_*` function writes a small PNG and returns its path. Figures are
drawn with `matplotlib.figure.Figure` and the Agg canvas directly, never with
`pyplot`: nothing opens a window, and no global backend state is changed for
the caller (this works the same on headless CI and inside notebooks).

Images follow the package contract: RGB in [0, 255] (uint8 or float). Masks
are integer class ids `[H, W]` where `IGNORE_LABEL` (255) marks ignored pixels.
"""

import os

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from kerasvision.validation import IGNORE_LABEL, check_choice, check_float, check_int

_DPI = 80
_TILE_INCHES = 1.4

# Qualitative colours (Tableau 10 without its grey), bright enough to read on
# dark backgrounds; more classes fall back to evenly spaced hues.
_BASE_COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207),
)
_BACKGROUND_COLOUR = (20, 20, 20)
_IGNORE_COLOUR = (255, 255, 255)


def class_palette(num_classes):
    """Distinct RGB colours for class ids, background (class 0) dark.

    Args:
        num_classes: int >= 1.

    Returns:
        uint8 numpy array `[num_classes, 3]`.
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    colours = [_BACKGROUND_COLOUR]
    for i in range(1, num_classes):
        if i - 1 < len(_BASE_COLOURS):
            colours.append(_BASE_COLOURS[i - 1])
        else:
            # Golden-ratio hue steps keep consecutive extra classes far apart.
            hue = ((i - 1) * 0.618033988749895) % 1.0
            colours.append(tuple(int(255 * c) for c in _hsv_to_rgb(hue, 0.75, 0.95)))
    return np.asarray(colours, dtype=np.uint8)


def _hsv_to_rgb(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _to_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _as_uint8_image(image, name="image"):
    image = _to_numpy(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"`{name}` must be an RGB image [height, width, 3] (or grayscale "
            f"[height, width]); received shape {image.shape}."
        )
    return np.clip(np.rint(image.astype(np.float32)), 0, 255).astype(np.uint8)


def _as_mask(mask, name="mask"):
    mask = _to_numpy(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(
            f"`{name}` must be a class-id mask [height, width]; received shape {mask.shape}."
        )
    return mask.astype(np.int64)


def overlay_mask(image, mask, alpha=0.5, num_classes=None):
    """Blend class colours over an image.

    Background (class 0) is left as in the image so the scene stays readable;
    `IGNORE_LABEL` pixels are blended with white.

    Args:
        image: `[H, W, 3]` RGB in [0, 255] (uint8 or float), or `[H, W]` grayscale.
        mask: int `[H, W]` (or `[H, W, 1]`) class ids.
        alpha: float in [0, 1], weight of the class colour.
        num_classes: int, size of the palette; default: largest id in `mask` + 1.

    Returns:
        uint8 numpy array `[H, W, 3]`.
    """
    alpha = check_float("alpha", alpha, minimum=0.0, maximum=1.0)
    image = _as_uint8_image(image)
    mask = _as_mask(mask)
    if image.shape[:2] != mask.shape:
        raise ValueError(
            f"`mask` must have the image's height and width; received mask shape "
            f"{mask.shape} for image shape {image.shape}."
        )
    if num_classes is None:
        valid = mask[mask != IGNORE_LABEL]
        num_classes = max(int(valid.max()) + 1 if valid.size else 1, 2)
    palette = class_palette(num_classes).astype(np.float32)
    colours = np.zeros(image.shape, dtype=np.float32)
    known = (mask >= 0) & (mask < num_classes)
    colours[known] = palette[mask[known]]
    colours[mask == IGNORE_LABEL] = _IGNORE_COLOUR
    blend = (mask != 0) & (known | (mask == IGNORE_LABEL))
    out = image.astype(np.float32)
    out[blend] = (1 - alpha) * out[blend] + alpha * colours[blend]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)



def overlay_instances(image, masks, classes, num_classes, alpha=0.5):
    """Tint each instance mask of an image in its class colour.

    Instances are blended in order, so where masks overlap the later one is
    blended over the earlier one.

    Args:
        image: `[H, W, 3]` RGB in [0, 255] (uint8 or float).
        masks: `[N, H, W]` instance masks (bool, or 0/1 integers).
        classes: int `[N]` class ids in 0..num_classes-1 (no background id).
        num_classes: int, number of object classes; the colours are
            `class_palette(num_classes + 1)[1:]`, so class `c` takes the colour
            `overlay_mask` gives id `c + 1`.
        alpha: float in [0, 1], weight of the class colour.

    Returns:
        uint8 numpy array `[H, W, 3]`.

    Example:
        >>> tinted = overlay_instances(image, detections["masks"], detections["classes"], 4)
    """
    alpha = check_float("alpha", alpha, minimum=0.0, maximum=1.0)
    palette = class_palette(num_classes + 1)[1:]
    out = np.asarray(image).astype(np.float32)
    for mask, class_id in zip(masks, classes):
        mask = np.asarray(mask).astype(bool)
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(palette[int(class_id)], np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)

def _save(fig, path):
    """Write `fig` as PNG to `path` (parent dirs created) and return the path."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def _check_batch(name, array, ndims):
    array = _to_numpy(array)
    if array.ndim not in ndims:
        raise ValueError(
            f"`{name}` must have rank {' or '.join(map(str, ndims))}; received shape "
            f"{array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {array.shape}).")
    return array


def colour_mask(mask, num_classes):
    """Paints class ids as solid palette colours (`class_palette`); ignored pixels white.

    Args:
        mask: int `[H, W]` class ids.
        num_classes: int, size of the palette.

    Returns:
        uint8 `[H, W, 3]`.
    """
    mask = _as_mask(mask)
    palette = class_palette(num_classes)
    painted = np.empty(mask.shape + (3,), np.uint8)
    painted[...] = _IGNORE_COLOUR
    known = mask < num_classes
    painted[known] = palette[mask[known]]
    return painted


def outline_mask(image, mask, num_classes):
    """Draws the boundaries between the mask's regions on the image, in class colours.

    A pixel is on a boundary when a 4-neighbour has another class; it takes
    the colour of its own class (background boundaries are left as the image).

    Args:
        image: `[H, W, 3]` RGB in [0, 255].
        mask: int `[H, W]` class ids, the image's size.
        num_classes: int, size of the palette.

    Returns:
        uint8 `[H, W, 3]`.
    """
    image = _as_uint8_image(image)
    mask = _as_mask(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"`mask` must be the image's size {image.shape[:2]}; received {mask.shape}.")
    edge = np.zeros(mask.shape, bool)
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge &= (mask > 0) & (mask < num_classes)
    out = image.copy()
    out[edge] = class_palette(num_classes)[mask[edge]]
    return out


def image_mean_iou(mask_true, mask_pred, num_classes, ignore_label=IGNORE_LABEL):
    """Mean IoU of one image over the classes present in its ground truth or prediction.

    Args:
        mask_true, mask_pred: int `[H, W]` class ids.
        num_classes: int.
        ignore_label: pixels of `mask_true` with this id are not counted.

    Returns:
        float in [0, 1] (1.0 when no class is present in either).
    """
    valid = mask_true != ignore_label
    ious = []
    for c in range(num_classes):
        truth, predicted = (mask_true == c) & valid, (mask_pred == c) & valid
        union = np.count_nonzero(truth | predicted)
        if union:
            ious.append(np.count_nonzero(truth & predicted) / union)
    return float(np.mean(ious)) if ious else 1.0


def _upscale(tile, min_size):
    """Nearest-neighbour enlargement by a whole factor, to at least `min_size` pixels."""
    factor = max(1, -(-min_size // max(tile.shape[:2])))
    return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)


def plot_segmentation_examples(images, masks_true, masks_pred, class_names, path,
                               max_examples=8, min_tile_pixels=160):
    """One row per example: image, ground truth, prediction, predicted outlines on the image.

    Ground truth and prediction are drawn as solid class colours, the same
    colours as the legend (`class_palette`); the last panel draws the
    predicted regions' boundaries over the image. Tiles are enlarged by
    nearest neighbour (no blurring of pixels or labels) to at least
    `min_tile_pixels`, and each row is titled with that image's mean IoU.

    Args:
        images: `[N, H, W, 3]` RGB in [0, 255].
        masks_true: int `[N, H, W]` class ids.
        masks_pred: int `[N, H, W]` class ids, or `[N, H, W, C]` scores (argmax
            taken), or None to draw only the image and ground truth.
        class_names: sequence of `C` names, indexed by class id.
        path: output PNG path.
        max_examples: int, at most this many rows.
        min_tile_pixels: int, smallest side of a drawn tile, in pixels.

    Returns:
        `path`.

    Example:
        >>> plot_segmentation_examples(x, y, model.predict(x), SHAPES_CLASS_NAMES,
        ...                            "runs/examples.png")
    """
    images = _check_batch("images", images, (4,))
    masks_true = _check_batch("masks_true", masks_true, (3, 4))
    class_names = list(class_names)
    if len(class_names) < 1:
        raise ValueError("`class_names` must name at least one class; received [].")
    max_examples = check_int("max_examples", max_examples, minimum=1)
    min_tile_pixels = check_int("min_tile_pixels", min_tile_pixels, minimum=1)
    if masks_pred is not None:
        masks_pred = _check_batch("masks_pred", masks_pred, (3, 4))
        if masks_pred.ndim == 4 and masks_pred.shape[-1] > 1:
            masks_pred = np.argmax(masks_pred, axis=-1)
    for arg, masks in (("masks_true", masks_true), ("masks_pred", masks_pred)):
        if masks is not None and masks.shape[0] != images.shape[0]:
            raise ValueError(
                f"`{arg}` must have one mask per image ({images.shape[0]}); "
                f"received shape {masks.shape}."
            )
    num_classes = max(len(class_names), 2)
    count = min(images.shape[0], max_examples)
    titles = ["image", "ground truth"] + (
        ["prediction", "predicted outlines"] if masks_pred is not None else [])
    tile_pixels = _upscale(images[0], min_tile_pixels).shape[:2]
    tile_inches = (tile_pixels[1] / _DPI, tile_pixels[0] / _DPI)
    ncols = len(titles)
    legend_cols = max(1, min(len(class_names), int(tile_inches[0] * ncols / 1.1)))
    legend_inches = 0.1 + 0.22 * -(-len(class_names) // legend_cols)
    row_inches = tile_inches[1] + 0.3  # room for the row's title
    height = row_inches * count + 0.25 + legend_inches
    fig = Figure(figsize=(tile_inches[0] * ncols + 0.2, height))
    for i in range(count):
        tiles = [images[i], colour_mask(masks_true[i], num_classes)]
        if masks_pred is not None:
            tiles += [colour_mask(masks_pred[i], num_classes),
                      outline_mask(images[i], masks_pred[i], num_classes)]
        for p, tile in enumerate(tiles):
            ax = fig.add_subplot(count, ncols, i * ncols + p + 1)
            ax.imshow(_upscale(_as_uint8_image(tile, "images"), min_tile_pixels),
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            label = titles[p]
            if p == 0 and masks_pred is not None:
                label = (f"#{i}  mIoU {image_mean_iou(masks_true[i], masks_pred[i], num_classes):.2f}")
            ax.set_title(label, fontsize=8)
    palette = class_palette(num_classes) / 255.0
    handles = [Patch(color=palette[i], label=f"{i} {name}") for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=legend_cols, fontsize=7, frameon=False)
    fig.tight_layout(pad=0.3, rect=(0, legend_inches / height, 1, 1))
    return _save(fig, path)


def plot_history(history_dict, path):
    """One subplot per metric with its training and `val_` curves.

    Args:
        history_dict: dict metric name -> list of per-epoch values (as in
            `keras.callbacks.History.history`), or a `History` object.
        path: output PNG path.

    Returns:
        `path`.
    """
    history = getattr(history_dict, "history", history_dict)
    if not isinstance(history, dict) or not history:
        raise ValueError(
            "`history_dict` must be a non-empty dict of metric name -> list of values "
            f"(e.g. `model.fit(...).history`); received {history_dict!r}."
        )
    names = [k for k in history if not k.startswith("val_")]
    # A metric logged only for validation still gets its own panel.
    names += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history]
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if key in history:
                values = np.asarray(history[key], dtype=np.float64).reshape(-1)
                ax.plot(np.arange(1, values.size + 1), values, marker=".", label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_image_grid(images, path, nrows=None, title=None, value_range=(0, 255)):
    """Grid of images, e.g. samples from a generative model.

    Args:
        images: `[N, H, W, 3]`, `[N, H, W, 1]` or `[N, H, W]` array.
        path: output PNG path.
        nrows: int, grid rows; default: about square.
        title: optional str drawn above the grid.
        value_range: `(low, high)` of the input values, mapped to [0, 255]
            (e.g. `(-1, 1)` for tanh generators).

    Returns:
        `path`.
    """
    images = _check_batch("images", images, (3, 4)).astype(np.float32)
    low, high = value_range
    if not high > low:
        raise ValueError(f"`value_range` must be (low, high) with high > low; received {value_range!r}.")
    images = (images - low) * (255.0 / (high - low))
    n = images.shape[0]
    if nrows is None:
        nrows = int(np.ceil(np.sqrt(n)))
    nrows = check_int("nrows", nrows, minimum=1)
    ncols = -(-n // nrows)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(1.2 * ncols, 1.2 * nrows + (0.3 if title else 0.0)))
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(_as_uint8_image(images[i], "images"), interpolation="nearest")
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    return _save(fig, path)


def plot_confusion_matrix(cm, class_names, path, normalize=True):
    """Confusion matrix heat map (rows: true class, columns: predicted).

    Args:
        cm: `[C, C]` counts.
        class_names: sequence of `C` names.
        path: output PNG path.
        normalize: bool, colour by row-normalised rates (recall per class);
            the cells are annotated with these rates, otherwise with counts.

    Returns:
        `path`.
    """
    cm = _to_numpy(cm).astype(np.float64)
    class_names = list(class_names)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"`cm` must be a square matrix [C, C]; received shape {cm.shape}.")
    if len(class_names) != cm.shape[0]:
        raise ValueError(
            f"`class_names` must have one name per row of `cm` ({cm.shape[0]}); "
            f"received {len(class_names)} names."
        )
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = 1.2 + 0.45 * len(class_names)
    fig = Figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    if len(class_names) <= 12:
        threshold = values.max() / 2 if values.size else 0
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6,
                        color="white" if values[i, j] > threshold else "black")
    fig.tight_layout()
    return _save(fig, path)


def plot_class_heatmaps(image, heatmaps, class_names, path, stride, window, mask=None):
    """Where each class appears: per-class probability maps over an image.

    For the output of a convolutionalized classifier
    (`kerasvision.models.convolutionalize.convolutionalize`),
    whose map cell `(i, j)` classifies the `window x window` patch starting at
    pixel `(i * stride, j * stride)`. Each map is drawn over the image with
    cells centred on their patches; a first panel shows the image (with `mask`
    overlaid when given), a second the most probable class per cell.

    Args:
        image: `[H, W, 3]` RGB in [0, 255].
        heatmaps: `[h, w, C]` class probabilities (h, w >= 1).
        class_names: sequence of `C` names.
        path: output PNG path.
        stride: int, pixels between neighbouring cells (the network stride).
        window: int, side of the patch each cell classifies (the training size).
        mask: optional int `[H, W]` ground-truth class ids, overlaid on the first panel.

    Returns:
        `path`.
    """
    image = _as_uint8_image(image)
    heatmaps = _to_numpy(heatmaps).astype(np.float32)
    class_names = list(class_names)
    stride = check_int("stride", stride, minimum=1)
    window = check_int("window", window, minimum=1)
    if heatmaps.ndim != 3 or 0 in heatmaps.shape:
        raise ValueError(f"`heatmaps` must be [h, w, num_classes]; received shape {heatmaps.shape}.")
    if len(class_names) != heatmaps.shape[-1]:
        raise ValueError(
            f"`class_names` must have one name per heatmap channel ({heatmaps.shape[-1]}); "
            f"received {len(class_names)} names."
        )
    rows, cols, num_classes = heatmaps.shape
    # Cell (i, j) is drawn as a stride-sized square centred on its patch.
    start = window / 2 - stride / 2
    extent = (start, start + cols * stride, start + rows * stride, start)
    palette = class_palette(num_classes)
    panels = 2 + num_classes
    ncols = min(panels, 4)
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(2.4 * ncols, 2.5 * nrows))
    first = fig.add_subplot(nrows, ncols, 1)
    shown = image if mask is None else overlay_mask(image, mask, num_classes=num_classes)
    first.imshow(shown)
    first.set_title("image" if mask is None else "image and true classes", fontsize=8)
    # Maps are drawn over a dimmed grey copy, so that the image's own colours
    # are not read as probabilities.
    grey = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1).astype(np.uint8) // 2
    argmax = fig.add_subplot(nrows, ncols, 2)
    argmax.imshow(grey)
    winners = np.argmax(heatmaps, axis=-1)
    colours = np.concatenate([palette[winners] / 255.0, np.full((rows, cols, 1), 0.75)], axis=-1)
    colours[winners == 0, 3] = 0.0  # class 0 (background) left transparent
    argmax.imshow(colours, extent=extent, interpolation="nearest")
    argmax.set_title("most probable class", fontsize=8)
    for index, name in enumerate(class_names):
        ax = fig.add_subplot(nrows, ncols, 3 + index)
        ax.imshow(grey)
        shown_map = ax.imshow(heatmaps[..., index], extent=extent, alpha=0.8, cmap="magma",
                              vmin=0.0, vmax=1.0, interpolation="bilinear")
        ax.set_title(f"p({name})", fontsize=8)
    fig.colorbar(shown_map, ax=fig.axes, fraction=0.02, pad=0.02)
    for ax in fig.axes[: panels]:
        ax.set_xlim(0, image.shape[1])
        ax.set_ylim(image.shape[0], 0)
        ax.axis("off")
    handles = [Patch(color=palette[i] / 255.0, label=name) for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(num_classes, 6), fontsize=7,
               frameon=False)
    return _save(fig, path)


_DETECTION_TILE_INCHES = 2.5
_DETECTION_LEGEND_INCHES = 0.5


def _detection_rows(name, data, keys, count):
    """Per-image dicts of numpy arrays, from a list of dicts or one dict of batched arrays."""
    if isinstance(data, dict):
        if any(key not in data for key in keys):
            raise ValueError(f"`{name}` must have keys {list(keys)}; received {sorted(data)}.")
        batched = {key: _to_numpy(data[key]) for key in keys}
        data = [{key: batched[key][i] for key in keys} for i in range(batched[keys[0]].shape[0])]
    data = list(data)
    if len(data) != count:
        raise ValueError(
            f"`{name}` must have one entry per image ({count}); received {len(data)}."
        )
    rows = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or any(key not in entry for key in keys):
            raise ValueError(f"`{name}[{index}]` must be a dict with keys {list(keys)}.")
        classes = _to_numpy(entry["classes"]).astype(np.int64).reshape(-1)
        boxes = _to_numpy(entry["boxes"]).astype(np.float64).reshape(-1, 4)
        if boxes.shape[0] != classes.size:
            raise ValueError(
                f"`{name}[{index}]['boxes']` must have one xyxy box per class id "
                f"({classes.size}); received shape {boxes.shape}."
            )
        row = {"boxes": boxes, "classes": classes}
        if "scores" in keys:
            row["scores"] = _to_numpy(entry["scores"]).astype(np.float64).reshape(-1)
        keep = classes >= 0  # class -1 marks padding rows
        rows.append({key: value[keep] for key, value in row.items()})
    return rows


def plot_detections(images, detections, class_names, path, ground_truth=None,
                    score_threshold=0.3, ncols=4):
    """A grid of images with predicted boxes (solid, "class score") and ground truth (dashed).

    Boxes are xyxy pixels (the `kerasvision.boxes` contract), coloured by
    class (`class_palette` without its background colour, so class 0 is
    coloured too); rows with class -1 are padding and are skipped. Each image
    fills a 2.5-inch square tile (200 pixels at the module's 80 dpi), with a
    0.5-inch legend band below the grid.

    Args:
        images: `[N, H, W, 3]` RGB in [0, 255].
        detections: per-image dicts `{"boxes": [M, 4], "scores": [M],
            "classes": [M]}`, or one dict of batched padded arrays (as
            `kerasvision.boxes.batched_non_max_suppression` returns).
        class_names: sequence of `C` names, indexed by class id.
        path: output PNG path.
        ground_truth: optional per-image dicts `{"boxes": [N, 4], "classes": [N]}`
            (or one batched dict), drawn dashed.
        score_threshold: float; detections with a lower score are not drawn.
        ncols: int >= 1, tiles per row.

    Returns:
        `path`. The PNG is `200 * min(ncols, N)` pixels wide and
        `200 * ceil(N / ncols) + 40` pixels high.
    """
    from matplotlib.patches import Rectangle

    images = _check_batch("images", images, (4,))
    class_names = list(class_names)
    if not class_names:
        raise ValueError("`class_names` must name at least one class; received [].")
    score_threshold = check_float("score_threshold", score_threshold)
    ncols = check_int("ncols", ncols, minimum=1)
    count = images.shape[0]
    predicted = _detection_rows("detections", detections, ("boxes", "scores", "classes"), count)
    truth = (None if ground_truth is None
             else _detection_rows("ground_truth", ground_truth, ("boxes", "classes"), count))
    for name, rows in (("detections", predicted), ("ground_truth", truth or [])):
        for index, row in enumerate(rows):
            if row["classes"].size and row["classes"].max() >= len(class_names):
                raise ValueError(
                    f"`{name}[{index}]['classes']` must be < len(class_names) "
                    f"({len(class_names)}); received class id {int(row['classes'].max())}."
                )
    colours = class_palette(len(class_names) + 1)[1:] / 255.0
    cols = min(ncols, count)
    rows_of_tiles = -(-count // cols)
    height = _DETECTION_TILE_INCHES * rows_of_tiles + _DETECTION_LEGEND_INCHES
    fig = Figure(figsize=(_DETECTION_TILE_INCHES * cols, height))
    for i in range(count):
        image = _as_uint8_image(images[i], "images")
        ax = fig.add_subplot(rows_of_tiles, cols, i + 1)
        ax.imshow(image, interpolation="nearest")
        drawn = [(truth[i], "--", False)] if truth is not None else []
        drawn.append((predicted[i], "-", True))
        for row, style, labelled in drawn:
            for j, (box, cls) in enumerate(zip(row["boxes"], row["classes"])):
                if labelled and row["scores"][j] < score_threshold:
                    continue
                x1, y1, x2, y2 = box
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                       edgecolor=colours[cls], linewidth=1.2, linestyle=style))
                if labelled:
                    ax.text(x1, y1, f"{class_names[cls]} {row['scores'][j]:.2f}", fontsize=6,
                            color="white", va="bottom", clip_on=True,
                            bbox={"facecolor": colours[cls], "alpha": 0.8, "pad": 1,
                                  "edgecolor": "none"})
        ax.set_xlim(0, image.shape[1])
        ax.set_ylim(image.shape[0], 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{i}", fontsize=7)
    handles = [Patch(color=colours[k], label=name) for k, name in enumerate(class_names)]
    if truth is not None:
        handles.append(Patch(fill=False, edgecolor="black", linestyle="--",
                             label="ground truth (dashed)"))
    fig.legend(handles=handles, loc="lower center", fontsize=7, frameon=False,
               ncol=max(1, min(len(handles), int(2.2 * cols))))
    # Fixed margins instead of tight_layout: the PNG size stays exactly the figure size.
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.25 / height,
                        bottom=(_DETECTION_LEGEND_INCHES + 0.05) / height, wspace=0.05,
                        hspace=0.15)
    return _save(fig, path)


def plot_precision_recall(curves, path):
    """Precision-recall curves, one line per class with its AP in the legend.

    Args:
        curves: dict class name -> dict with `"recall"` `[D]`, `"precision"`
            `[D]` (e.g. from `kerasvision.metrics.precision_recall_curve`) and
            `"ap"` (a float, e.g. `coco_evaluate(...)["per_class_ap_50"][name]`).
            A class whose recall is NaN (no ground truth) is listed without a line.
        path: output PNG path.

    Returns:
        `path`. The PNG is 400 x 320 pixels (5 x 4 inches at 80 dpi).
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            "`curves` must be a non-empty dict of class name -> {'recall', 'precision', "
            f"'ap'}}; received {curves!r}."
        )
    fig = Figure(figsize=(5.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    colours = class_palette(len(curves) + 1)[1:] / 255.0
    for k, (name, curve) in enumerate(curves.items()):
        if not isinstance(curve, dict) or any(key not in curve for key in
                                              ("recall", "precision", "ap")):
            raise ValueError(
                f"`curves[{name!r}]` must be a dict with keys 'recall', 'precision' and 'ap'; "
                f"received {curve!r}."
            )
        recall = _to_numpy(curve["recall"]).astype(np.float64).reshape(-1)
        precision = _to_numpy(curve["precision"]).astype(np.float64).reshape(-1)
        if recall.shape != precision.shape:
            raise ValueError(
                f"`curves[{name!r}]` recall and precision must have the same length; "
                f"received {recall.size} and {precision.size} values."
            )
        ap = float(curve["ap"])
        if recall.size == 0 or np.all(np.isnan(recall)):
            ax.plot([], [], color=colours[k], label=f"{name} (AP {ap:.3f})")
            continue
        # Start the line at recall 0 so that a class with one detection is still visible.
        ax.plot(np.concatenate([[0.0], recall]), np.concatenate([[precision[0]], precision]),
                color=colours[k], linewidth=1.2, label=f"{name} (AP {ap:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall", fontsize=8)
    ax.set_ylabel("precision", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.95, bottom=0.12)
    return _save(fig, path)


def plot_roc(reports, path):
    """Writes the ROC curves of several methods (FAR against TAR, AUC in the legend) as a PNG.

    Args:
        reports: dict method name -> dict with `roc` (`far`, `tar` lists) and `auc`.
        path: output PNG path.

    Returns:
        `path`.
    """
    fig = Figure(figsize=(4.5, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for name, report in reports.items():
        ax.plot(report["roc"]["far"], report["roc"]["tar"], linewidth=1.4,
                label=f"{name} (AUC {report['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("false accept rate", fontsize=8)
    ax.set_ylabel("true accept rate", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.subplots_adjust(left=0.13, right=0.97, top=0.96, bottom=0.12)
    FigureCanvasAgg(fig).print_png(path)
    return path


def overlay_heatmap(image, heatmap, alpha=0.5, colormap="jet"):
    """Blends a `[0, 1]` heatmap, coloured by a matplotlib colormap, over an image.

    Args:
        image: `[H, W, 3]` RGB in [0, 255].
        heatmap: `[H, W]` values in [0, 1] (a `[h, w]` map is resized, bilinear).
        alpha: float in [0, 1], opacity of the heatmap (scaled by its value,
            so cold regions show the image).
        colormap: str, a matplotlib colormap name.

    Returns:
        uint8 numpy `[H, W, 3]`.
    """
    from matplotlib import colormaps

    image = np.asarray(image, dtype=np.float32)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be [H, W, 3]; received shape {image.shape}.")
    if heatmap.ndim != 2:
        raise ValueError(f"`heatmap` must be [H, W]; received shape {heatmap.shape}.")
    alpha = check_float("alpha", alpha, minimum=0.0, maximum=1.0)
    if colormap not in colormaps:
        check_choice("colormap", colormap, sorted(colormaps))
    if heatmap.shape != image.shape[:2]:
        heatmap = keras.ops.convert_to_numpy(keras.ops.image.resize(
            heatmap[None, ..., None], image.shape[:2], interpolation="bilinear"))[0, ..., 0]
    heatmap = np.clip(heatmap, 0.0, 1.0)
    colours = colormaps[colormap](heatmap)[..., :3] * 255.0
    weight = alpha * heatmap[..., None]
    return np.clip(np.rint((1 - weight) * image + weight * colours), 0, 255).astype(np.uint8)


def plot_explanations(images, maps, path, masks=None, titles=None, alpha=0.5):
    """A PNG grid: one row per image; the image, then each explanation over it.

    Args:
        images: `[N, H, W, 3]` RGB in [0, 255].
        maps: dict name -> `[N, H, W]` maps in [0, 1] (e.g. {"Grad-CAM": ...,
            "SmoothGrad": ...}), drawn in order as columns.
        path: str, output PNG path (parent directories created).
        masks: optional `[N, H, W]` object masks, outlined on the first column.
        titles: optional list of N str, one per row (e.g. the class and the
            mass inside the mask).
        alpha: float, heatmap opacity (`overlay_heatmap`).

    Returns:
        `path`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"`images` must be a non-empty [N, H, W, 3]; received shape {images.shape}.")
    if not isinstance(maps, dict) or not maps:
        raise ValueError(f"`maps` must be a non-empty dict name -> [N, H, W]; received {type(maps).__name__}.")
    count = images.shape[0]
    for name, values in maps.items():
        if np.asarray(values).shape[0] != count:
            raise ValueError(
                f"`maps`[{name!r}] must hold one map per image ({count}); received shape "
                f"{np.asarray(values).shape}."
            )
    if titles is not None and len(titles) != count:
        raise ValueError(f"`titles` must hold one title per image ({count}); received {len(titles)}.")
    columns = 1 + len(maps)
    # Drawn with the Agg canvas directly, as `kerasvision.visualize` does: no
    # pyplot, no window, no global backend state.
    fig = Figure(figsize=(1.6 * columns, 1.7 * count))
    for row in range(count):
        ax = fig.add_subplot(count, columns, row * columns + 1)
        ax.imshow(np.clip(images[row], 0, 255).astype(np.uint8))
        if masks is not None:
            ax.contour(np.asarray(masks[row]) != 0, levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(titles[row] if titles else "image", fontsize=7)
        ax.axis("off")
        for column, (name, values) in enumerate(maps.items(), start=2):
            ax = fig.add_subplot(count, columns, row * columns + column)
            ax.imshow(overlay_heatmap(images[row], np.asarray(values[row]), alpha=alpha))
            ax.set_title(name, fontsize=7)
            ax.axis("off")
    fig.tight_layout(pad=0.3)
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=80, format="png")
    return path


def plot_robustness_curves(examples, predictions, labels, class_names, curves, epsilons, path):
    """PNG: clean and attacked images titled with their predictions, over accuracy-vs-epsilon curves.

    Args:
        examples: dict row title -> `[N, H, W, 3]` images in [0, 255], drawn as
            rows in order (e.g. `{"clean": ..., "FGSM 8/255": ...,
            "PGD 8/255": ...}`).
        predictions: dict with the same keys -> int `[N]` predicted class ids.
        labels: int `[N]` true class ids; a title is green where the prediction
            is right, red where it is wrong.
        class_names: sequence of class names, indexed by class id.
        curves: dict model name -> `{"fgsm": [accuracy per epsilon], "pgd":
            [...]}` (`kerasvision.tasks.robustness.robustness_table`'s result),
            FGSM drawn dashed and PGD solid.
        epsilons: the budgets of `curves`, the x axis (grey levels of 255).
        path: output PNG path (parent directories created).

    Returns:
        `path`.
    """
    if not isinstance(examples, dict) or not examples:
        raise ValueError(
            f"`examples` must be a non-empty dict title -> [N, H, W, 3]; received {examples!r}.")
    if set(predictions) != set(examples):
        raise ValueError(
            f"`predictions` must have the keys of `examples` ({list(examples)}); received "
            f"{list(predictions)}.")
    count = len(labels)
    fig = Figure(figsize=(1.5 * max(count, 3), 1.6 * len(examples) + 2.6))
    grid = fig.add_gridspec(len(examples) + 2, count)
    for row, (name, batch) in enumerate(examples.items()):
        predicted = np.asarray(predictions[name])
        for column in range(len(batch)):
            ax = fig.add_subplot(grid[row, column])
            ax.imshow(np.clip(np.rint(batch[column]), 0, 255).astype(np.uint8))
            colour = "green" if predicted[column] == labels[column] else "red"
            ax.set_title(f"{name}: {class_names[predicted[column]]}", fontsize=6, color=colour)
            ax.axis("off")
    ax = fig.add_subplot(grid[len(examples):, :])
    for name, curve in curves.items():
        for attack, style in (("fgsm", "--"), ("pgd", "-")):
            ax.plot(epsilons, curve[attack], style, marker=".", label=f"{name}, {attack.upper()}")
    ax.set_xlabel("epsilon (grey levels of 255)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout(pad=0.4)
    return _save(fig, path)
