"""Grad-CAM and saliency maps of a shapes classifier: does it look at the shape?

Trains a small CNN (`build_cnn_classifier`) on the embedded one-shape images
(disk, square, triangle, cross at 32x32; no download), or loads its weights
with --weights, then explains its decisions on held-out one-shape images
whose object masks are known:

- Grad-CAM (Selvaraju et al. 2017): the last convolution's maps weighted by
  the spatial mean of the class score's gradient;
- vanilla gradient saliency (Simonyan et al. 2014);
- SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies.

It prints, for each method, the share of the map's mass inside the object's
mask next to the share of the image the object covers (a map blind to the
object scores about the area share), and how often the map's peak is on the
object (the pointing game).

Run:
    python recipes/explain.py                        # trains ~1 min on 2 cores, then explains
    python recipes/explain.py --weights runs/explain/best.weights.h5
    python recipes/explain.py --smoke --output-dir /tmp/explain

Writes to --output-dir (runs/explain): explanations.png (images with their
masks outlined, Grad-CAM, saliency and SmoothGrad overlays), best.weights.h5,
history.csv, summary.json (accuracy, mass inside the masks per method, the
objects' area share); and the classifier as a SavedModel to
<export-dir>/<next version>/ (uint8 images -> probabilities and class_ids).
"""

import os

from kerasvision import explain
from kerasvision.export import export_image_model
from kerasvision.models.classifier import HEAD_TYPES, build_cnn_classifier
from kerasvision.tasks.classification import (
    add_classification_flags,
    compile_classifier,
    evaluate_classifier,
    fit_classifier,
    load_classification_data,
)
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.robustness import (
    check_explain_args,
    explanation_examples,
    summarise_explanations,
)
from kerasvision.tasks.runs import write_json
from kerasvision.training import load_model_weights
from kerasvision.visualize import plot_explanations


def parse_args(argv):
    parser = recipe_parser(__doc__, image_size=32, batch_size=32, epochs=8, learning_rate=3e-3)
    parser.add_argument("--filters", type=int, nargs="+", default=[8, 16, 32],
                        help="conv block widths; Grad-CAM reads the last block (stride 4)")
    parser.add_argument("--head", choices=HEAD_TYPES, default="flatten",
                        help="flatten + dense, or global pooling + dense (as in CAM)")
    parser.add_argument("--dense-units", type=int, nargs="*", default=[32], help="hidden dense layers")
    parser.add_argument("--dropout", type=float, default=0.1, help="before each dense layer")
    parser.add_argument("--weights", help="a .weights.h5 of this architecture: explain it, no training")
    parser.add_argument("--layer", help="Grad-CAM layer name (default: the last convolution)")
    parser.add_argument("--num-explain", type=int, default=256, help="images whose maps are measured")
    parser.add_argument("--num-plot", type=int, default=6, help="images drawn in explanations.png")
    parser.add_argument("--samples", type=int, default=25, help="SmoothGrad noisy copies per image")
    parser.add_argument("--noise", type=float, default=0.15,
                        help="SmoothGrad noise std, fraction of the pixel range (paper: 0.1-0.2)")
    add_classification_flags(parser)
    parser.set_defaults(num_train=4096, augment="false")  # ~1 min; shapes need no augmentation
    args = parser.parse_args(argv)
    check_explain_args(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, "explain")

    # Data: the embedded one-shape images, batched.
    train, validation, class_names = load_classification_data(args)

    # Model: a small CNN, trained here or read from --weights.
    with args.distribute_strategy.scope():
        model = build_cnn_classifier(
            len(class_names), (args.image_size, args.image_size, 3), filters=args.filters,
            head=args.head, dense_units=args.dense_units, dropout=args.dropout,
        )
    compile_classifier(model, args.learning_rate, args.jit_compile)
    if args.weights:
        load_model_weights(model, args.weights)
    else:
        fit_classifier(model, train, validation, args.output_dir,
                       epochs=1 if args.smoke else args.epochs, verbose=verbose,
                       steps_per_epoch=2 if args.smoke else None,
                       max_minutes=args.max_train_minutes)
    summary = evaluate_classifier(model, validation, class_names)

    # Explanations of each image's true class, on images with known object masks.
    images, labels, masks = explanation_examples(args, validation)
    maps = {
        "Grad-CAM": explain.grad_cam(model, images, class_index=labels, layer=args.layer),
        "saliency": explain.vanilla_saliency(model, images, class_index=labels),
        "SmoothGrad": explain.smoothgrad_saliency(
            model, images, class_index=labels, samples=args.samples, noise=args.noise,
            seed=args.seed),
    }
    summary["grad_cam_layer"] = explain.find_grad_cam_layer(model, args.layer).name
    summary.update(summarise_explanations(maps, masks))

    # The figure: each image with its mask, then the three maps over it.
    shown = slice(0, args.num_plot)
    titles = [class_names[label] for label in labels[shown]]
    if masks is not None:
        inside = explain.heatmap_mass_inside(maps["Grad-CAM"][shown], masks[shown])
        titles = [f"{title}: {share:.0%} in" for title, share in zip(titles, inside)]
    summary["explanations"] = plot_explanations(
        images[shown], {name: values[shown] for name, values in maps.items()},
        os.path.join(args.output_dir, "explanations.png"),
        masks=None if masks is None else masks[shown], titles=titles,
    )

    # The classifier for TF Serving, as the classification recipes export it.
    summary["export_path"] = export_image_model(model, args.export_dir, outputs="logits")
    print(f"explanations in {summary['explanations']}; exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
