"""Adversarial attacks on a shapes classifier, and adversarial training as the defence.

A small CNN (`build_cnn_classifier`) is trained on the embedded one-shape
images (32x32; no download). A copy of it is then fine-tuned adversarially
(`AdversarialClassifier`: every step attacks the batch with the current
weights and trains on `(1 - w) * clean + w * adversarial` cross-entropy,
Goodfellow et al. 2015; Madry et al. 2018). A tiny network trained
adversarially from scratch stays at chance for several epochs, so the
defence starts from the plain model's weights.

Both models are then attacked on held-out images with FGSM (one signed
gradient step, Goodfellow et al. 2015) and PGD (projected steps from a
random start, Madry et al. 2018) at several L-infinity budgets. Budgets
are in grey levels: `--epsilons 8` lets every pixel of the [0, 255] image
move by 8 (epsilon = 8/255 of the range, as the papers quote it).

Run:
    python recipes/adversarial.py                   # ~2-3 min on 2 cores
    python recipes/adversarial.py --attack pgd --train-steps 3 --adversarial-weight 1
    python recipes/adversarial.py --smoke --output-dir /tmp/adversarial

Writes to --output-dir (runs/adversarial): robustness.png (clean and
attacked examples with predictions, accuracy versus epsilon), summary.json
(clean and attacked accuracy per model, attack and epsilon), plain/ and
adversarial/ (checkpoints, history.csv); and the adversarially trained
classifier as a SavedModel to <export-dir>/<next version>/.
"""

import os

from kerasvision import kernels
from kerasvision.adversarial import ATTACKS
from kerasvision.export import export_image_model
from kerasvision.models.adversarial_training import AdversarialClassifier
from kerasvision.models.classifier import build_cnn_classifier
from kerasvision.tasks.classification import (
    add_classification_flags,
    compile_classifier,
    fit_classifier,
    load_classification_data,
)
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.robustness import (
    as_arrays,
    check_adversarial_args,
    fit_adversarial,
    plot_robustness,
    robustness_table,
)
from kerasvision.tasks.runs import write_json
from kerasvision.training import resolve_jit_compile


def parse_args(argv):
    parser = recipe_parser(__doc__, image_size=32, batch_size=32, epochs=5, learning_rate=3e-3)
    parser.add_argument("--filters", type=int, nargs="+", default=[8, 16, 32], help="conv block widths")
    parser.add_argument("--dense-units", type=int, nargs="*", default=[32], help="hidden dense layers")
    parser.add_argument("--dropout", type=float, default=0.1, help="before each dense layer")
    parser.add_argument("--attack", choices=ATTACKS, default="fgsm", help="attack used in training")
    parser.add_argument("--train-epsilon", type=float, default=8, help="training budget, grey levels")
    parser.add_argument("--train-steps", type=int, default=3, help="PGD steps in training")
    parser.add_argument("--adversarial-weight", type=float, default=0.5,
                        help="w: share of the adversarial loss (0.5 Goodfellow; 1 Madry)")
    parser.add_argument("--adversarial-epochs", type=int, default=5, help="adversarial fine-tuning")
    parser.add_argument("--adversarial-learning-rate", type=float, default=1e-3,
                        help="Adam rate of the fine-tuning")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0, 2, 4, 8, 16],
                        help="evaluation budgets, grey levels (0: clean)")
    parser.add_argument("--pgd-steps", type=int, default=10, help="PGD steps in evaluation")
    parser.add_argument("--num-eval", type=int, default=512, help="held-out images attacked")
    add_classification_flags(parser)
    parser.set_defaults(num_train=4096, augment="false")  # adversarial pixels survive no warping
    args = parser.parse_args(argv)
    check_adversarial_args(args)
    return args


def build_classifier(args, num_classes):
    return build_cnn_classifier(num_classes, (args.image_size, args.image_size, 3),
                                filters=args.filters, dense_units=args.dense_units,
                                dropout=args.dropout)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, "adversarial")
    epochs, steps = (1, 2) if args.smoke else (args.epochs, None)

    # Data: the embedded one-shape images, batched.
    train, validation, class_names = load_classification_data(args)

    # 1. The plain classifier.
    with args.distribute_strategy.scope():
        plain = build_classifier(args, len(class_names))
    compile_classifier(plain, args.learning_rate, args.jit_compile)
    fit_classifier(plain, train, validation, os.path.join(args.output_dir, "plain"), epochs=epochs,
                   verbose=verbose, steps_per_epoch=steps, max_minutes=args.max_train_minutes)

    # 2. Its adversarially fine-tuned copy: attacks built inside every train step.
    with args.distribute_strategy.scope():
        robust = build_classifier(args, len(class_names))
        robust.set_weights(plain.get_weights())
        trainer = AdversarialClassifier(
            robust, attack=args.attack, epsilon=args.train_epsilon / 255, steps=args.train_steps,
            adversarial_weight=args.adversarial_weight, seed=args.seed,
        )
        trainer.compile(kernels.adam(args.adversarial_learning_rate),
                        jit_compile=resolve_jit_compile(args.jit_compile))
    if args.adversarial_epochs:
        fit_adversarial(trainer, train, validation, os.path.join(args.output_dir, "adversarial"),
                        epochs=1 if args.smoke else args.adversarial_epochs, verbose=verbose,
                        steps_per_epoch=steps, max_minutes=args.max_train_minutes)

    # 3. Clean and attacked accuracy of both, FGSM and PGD, at each budget.
    images, labels = as_arrays(validation, args.num_eval)
    models = {"plain": plain, f"adversarial ({args.attack})": robust}
    table = robustness_table(models, images, labels, args.epsilons, args.pgd_steps, args.seed)
    summary = {"epsilons": args.epsilons, "num_eval": len(images), "accuracy": table,
               "train_attack": args.attack, "train_epsilon": args.train_epsilon}

    # 4. The figure, and the defended classifier for TF Serving.
    summary["figure"] = plot_robustness(
        plain, images, labels, args.train_epsilon, class_names, table, args.epsilons,
        os.path.join(args.output_dir, "robustness.png"), pgd_steps=args.pgd_steps)
    summary["export_path"] = export_image_model(robust, args.export_dir, outputs="logits")
    print(f"figure in {summary['figure']}; adversarially trained classifier exported to "
          f"{summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
