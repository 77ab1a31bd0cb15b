"""Metrics by task: what `compile(metrics=...)` takes, and the reports read after evaluation.

Modules:
    segmentation: streaming metrics over a confusion matrix (`MeanIoU`,
        `PerClassIoU`, `MeanDice`, `PixelAccuracy`, `FrequencyWeightedIoU`,
        all subclasses of `ConfusionMatrixMetric`), their numpy twins
        (`confusion_matrix_np`, `per_class_iou`, `mean_iou`...),
        `segmentation_report`, and `segmentation_confusion_matrix`, a model's
        matrix over a dataset.
    classification: `classification_confusion_matrix` (a classifier over a
        dataset), `per_class_accuracy` and `classification_report`.
    detection: COCO box mAP (`coco_evaluate`), `precision_recall_curve`,
        `interpolated_average_precision` (COCO 101-point) and
        `voc07_average_precision` (PASCAL VOC 2007 11-point).
    panoptic: panoptic quality (`panoptic_quality`: PQ = SQ x RQ, overall,
        per class, things and stuff) and `panoptic_merge` of semantic and
        instance outputs; mask AP is `coco_evaluate(..., iou_type="segm")`.
    verification: verification and identification from embeddings
        (`verification_roc`, `verification_auc`, `tar_at_far`,
        `identification_top1`, `make_verification_pairs`,
        `evaluate_verification`).
    sample_quality: FID and KID of generated images (`frechet_distance`,
        `kernel_distance`, `sample_quality`) on the features of a
        `FeatureExtractor`, such as `inception_feature_extractor()`.

The shapes feature extractor, trained once on the embedded data for offline
FID/KID, is a model: `kerasvision.models.shapes_features`.

Everything public is re-exported here: `from kerasvision.metrics import
MeanIoU` and `kerasvision.metrics.sample_quality(...)` (the function; import
the module's other names from it, e.g. `from kerasvision.metrics.sample_quality
import FeatureExtractor`).
"""

from kerasvision.metrics.classification import (
    classification_confusion_matrix,
    classification_report,
    per_class_accuracy,
    window_centre_accuracy,
)
from kerasvision.metrics.detection import (
    coco_evaluate,
    interpolated_average_precision,
    interpolated_precision,
    precision_recall_curve,
    voc07_average_precision,
)
from kerasvision.metrics.panoptic import (
    panoptic_merge,
    panoptic_quality,
)

# `sample_quality` below is the function: its name shadows the submodule's
# attribute on this package (import other names from the submodule itself).
from kerasvision.metrics.sample_quality import (
    FeatureExtractor,
    frechet_distance,
    frechet_distance_from_statistics,
    inception_feature_extractor,
    kernel_distance,
    sample_quality,
    trace_sqrt_product,
)
from kerasvision.metrics.segmentation import (
    ConfusionMatrixMetric,
    FrequencyWeightedIoU,
    MeanDice,
    MeanIoU,
    PerClassIoU,
    PixelAccuracy,
    confusion_matrix_np,
    frequency_weighted_iou,
    mean_dice,
    mean_iou,
    per_class_dice,
    per_class_iou,
    pixel_accuracy,
    segmentation_confusion_matrix,
    segmentation_report,
)
from kerasvision.metrics.verification import (
    evaluate_verification,
    gallery_probe_split,
    identification_top1,
    make_verification_pairs,
    pair_distances,
    tar_at_far,
    verification_auc,
    verification_roc,
)

__all__ = [
    "ConfusionMatrixMetric",
    "FeatureExtractor",
    "FrequencyWeightedIoU",
    "MeanDice",
    "MeanIoU",
    "PerClassIoU",
    "PixelAccuracy",
    "classification_confusion_matrix",
    "classification_report",
    "coco_evaluate",
    "confusion_matrix_np",
    "evaluate_verification",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "frequency_weighted_iou",
    "gallery_probe_split",
    "identification_top1",
    "inception_feature_extractor",
    "interpolated_average_precision",
    "interpolated_precision",
    "kernel_distance",
    "make_verification_pairs",
    "mean_dice",
    "mean_iou",
    "pair_distances",
    "panoptic_merge",
    "panoptic_quality",
    "per_class_accuracy",
    "per_class_dice",
    "per_class_iou",
    "pixel_accuracy",
    "precision_recall_curve",
    "sample_quality",
    "segmentation_confusion_matrix",
    "segmentation_report",
    "tar_at_far",
    "trace_sqrt_product",
    "verification_auc",
    "verification_roc",
    "voc07_average_precision",
    "window_centre_accuracy",
]
