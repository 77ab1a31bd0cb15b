"""Class heatmaps from a convolutionalized classifier: where each shape appears in a larger scene.

Trains a small Flatten/Dense CNN (`build_cnn_classifier`) on 32x32 images of
one shape each (disk, square, triangle, cross) plus 32x32 background patches,
then `convolutionalize`s it: its dense layers become convolutions holding the
same weights, so one forward pass over a larger scene classifies every 32x32
window at the network's stride (8 pixels) and returns a map of class
probabilities (Long, Shelhamer and Darrell 2015, section 3.1; Sermanet et al.
2014). The scene is generated with several shapes at the training images'
scale, with its true class mask for comparison. Everything is embedded: no
download.

Run:
    python recipes/heatmap.py                          # 128x128 scene, defaults below
    python recipes/heatmap.py --scene-size 192 --num-objects 8
    python recipes/heatmap.py --smoke --output-dir /tmp/heatmap

Writes to --output-dir (runs/heatmap): heatmaps.png (the scene with its true
classes, the most probable class per window and one probability map per
class), classifier.keras and heatmap_model.keras (the trained classifier and
its convolutional form), history.csv, summary.json (validation accuracy,
how often a window centred on a shape is classified as that shape, the
highest probability of each class in the scene and whether the class is
there). --export-dir is not used: the heatmap network takes any image size,
which the fixed-size serving signature does not.
"""

import os

import numpy as np
import tensorflow as tf

from kerasvision import data, visualize
from kerasvision.metrics import window_centre_accuracy
from kerasvision.models.classifier import build_cnn_classifier
from kerasvision.models.convolutionalize import convolutionalize
from kerasvision.tasks.classification import compile_classifier, fit_classifier
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.runs import write_json
from kerasvision.validation import check_int

CLASS_NAMES = data.SHAPES_CLASS_NAMES  # background first, then the four shapes
WINDOW = 32  # the classifier's input side: each heatmap cell classifies a 32x32 window
# Shape sizes of the training images, as a fraction of 32 pixels; scenes
# draw their shapes at the same size in pixels.
SHAPE_SCALE = (0.4, 0.8)
SMOKE_IMAGES = 16


def parse_args(argv):
    parser = recipe_parser(__doc__, image_size=WINDOW, batch_size=64, epochs=6, learning_rate=2e-3)
    parser.add_argument("--num-train", type=int, default=4096, help="training images of shapes")
    parser.add_argument("--scene-size", type=int, default=128, help="side of the scene, pixels (>= 32)")
    parser.add_argument("--num-objects", type=int, default=5, help="shapes in the scene")
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32, 64],
                        help="conv block widths (3 blocks: stride 8 between heatmap cells)")
    args = parser.parse_args(argv)
    if args.image_size != WINDOW:
        raise ValueError(
            f"--image-size must be {WINDOW} (the embedded shapes' size); received {args.image_size}."
        )
    check_int("--scene-size", args.scene_size, minimum=WINDOW)
    check_int("--num-objects", args.num_objects, minimum=1)
    return args


def load_data(args):
    """Windows of one shape (labels 1..4) and of background (label 0) as batched pipelines."""
    num_train = SMOKE_IMAGES if args.smoke else args.num_train
    num_val = SMOKE_IMAGES if args.smoke else max(256, num_train // 8)
    batch_size = min(args.batch_size, 8) if args.smoke else args.batch_size
    pipelines = []
    for split, count in (("train", num_train), ("validation", num_val)):
        images, labels = data.make_shapes_windows(count, WINDOW, seed=args.seed, split=split,
                                                  shape_scale=SHAPE_SCALE)
        dataset = tf.data.Dataset.from_tensor_slices((images.astype("float32"), labels))
        pipelines.append(data.make_classification_pipeline(
            dataset, batch_size, training=split == "train", seed=args.seed))
    return pipelines


def make_scene(args):
    """A scene of several shapes at the training scale, and its true class mask."""
    scale = tuple(fraction * WINDOW / args.scene_size for fraction in SHAPE_SCALE)
    scenes, masks = data.make_shapes_scenes(
        1, image_size=args.scene_size, seed=args.seed, split="test",
        min_objects=args.num_objects, max_objects=args.num_objects,
        min_scale=scale[0], max_scale=scale[1],
    )
    return scenes[0], masks[0]


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, "heatmap")
    train, validation = load_data(args)

    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        classifier = build_cnn_classifier(
            len(CLASS_NAMES), (WINDOW, WINDOW, 3), filters=args.filters, head="flatten",
            dense_units=(64,), dropout=0.3,
        )
    compile_classifier(classifier, args.learning_rate, args.jit_compile)
    epochs, steps = (1, 2) if args.smoke else (args.epochs, None)
    history = fit_classifier(classifier, train, validation, args.output_dir, epochs, verbose,
                             steps_per_epoch=steps, max_minutes=args.max_train_minutes)
    accuracy = history.get("val_accuracy", [float("nan")])[-1]
    print(f"classifier validation accuracy: {accuracy:.4f}")

    heatmap_model = convolutionalize(classifier)
    scene, mask = make_scene(args)
    probabilities = heatmap_model.predict(scene[None].astype("float32"), verbose=0)[0]
    stride = 2 ** len(args.filters)  # one 2x2 pooling per block
    print(f"scene {scene.shape[0]}x{scene.shape[1]} -> heatmap {probabilities.shape[0]}x"
          f"{probabilities.shape[1]} cells, one per {WINDOW}x{WINDOW} window at stride {stride}")

    present = set(np.unique(mask).tolist())
    peaks = {name: {"max_probability": float(probabilities[..., index].max()),
                    "in_scene": index in present} for index, name in enumerate(CLASS_NAMES)}
    for name, peak in peaks.items():
        print(f"{name:<10} in scene: {'yes' if peak['in_scene'] else 'no ':<3}  "
              f"highest probability {peak['max_probability']:.3f}")

    centred = window_centre_accuracy(probabilities, mask, stride, WINDOW)
    print(f"windows centred on a shape: {centred['windows']}, classified as that shape: "
          f"{centred['accuracy']:.1%}")

    path = visualize.plot_class_heatmaps(
        scene, probabilities, CLASS_NAMES, os.path.join(args.output_dir, "heatmaps.png"),
        stride=stride, window=WINDOW, mask=mask,
    )
    print(f"wrote {path}")
    classifier.save(os.path.join(args.output_dir, "classifier.keras"))
    heatmap_model.save(os.path.join(args.output_dir, "heatmap_model.keras"))
    summary = {
        "validation_accuracy": accuracy,
        "classes": peaks,
        "windows_centred_on_a_shape": centred,
        "heatmap": path,
    }
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
