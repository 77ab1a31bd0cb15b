"""Siamese embedding networks for verification by metric learning.

A siamese network (Bromley et al. 1993; Chopra, Hadsell and LeCun 2005) runs
two images through one network with shared weights and compares the two
outputs. Trained with a loss on distances, the network becomes an embedding:
images of one identity land close together and different identities far
apart, so that identities never seen in training can be verified (is this
the same person?) by thresholding a distance, as in DeepFace (Taigman et al.
2014) and FaceNet (Schroff et al. 2015).

- `build_embedding_network`: a small CNN mapping raw RGB images to
  L2-normalised embeddings (points on the unit sphere, as in FaceNet).
- `build_siamese_network`: two image inputs through one shared embedding
  network, returning their Euclidean distance: the siamese pair as a model,
  for scoring pairs.
- `EmbeddingDistance`: the layer that measures that distance.

No trainer is needed: the metric-learning losses of `kerasvision.losses`
(`ContrastiveLoss`, `TripletSemiHardLoss`) take `(identity labels,
embeddings)`, so `model.fit` on batches of `(images, identities)` trains the
embedding network directly, every pair (or triplet) of the batch sharing the
one network: the siamese weight sharing without building pairs by hand.
Batches should hold P identities with K >= 2 images each
(`kerasvision.tasks.verification.make_identity_pipeline`).
"""

import keras
from keras import layers, ops

from kerasvision.layers import apply_conv_block
from kerasvision.validation import check_image_shape, check_int


@keras.saving.register_keras_serializable(package="kerasvision")
class EmbeddingDistance(layers.Layer):
    """Euclidean distance between two batches of embeddings, row by row.

    Input: a list `[a, b]`, each `[batch, D]`. Output: float32 `[batch]`,
    `|a - b|`, with the square root taken of at least 1e-12 so that its
    gradient stays finite for identical rows.
    """

    def call(self, inputs):
        a, b = inputs
        squared = ops.sum(ops.square(ops.cast(a, "float32") - ops.cast(b, "float32")), axis=-1)
        return ops.sqrt(ops.maximum(squared, 1e-12))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)


def build_embedding_network(input_shape=(32, 32, 3), embedding_dim=64, filters=(32, 64, 128),
                            convs_per_block=2, batch_norm=True, name="embedding_network"):
    """A small CNN mapping raw images to L2-normalised embeddings.

    Rescaling to [0, 1], then one block of 3x3 convolutions per entry of
    `filters` (`apply_conv_block`, each followed by 2x2 max pooling), global
    average pooling (the embedding ignores where the object sits), a dense
    projection to `embedding_dim` and L2 normalisation: embeddings live on the
    unit sphere, so distances lie in [0, 2] and a loss's margin has a fixed
    scale (FaceNet, section 3).

    Args:
        input_shape: `(height, width, 3)`; height and width multiples of
            `2 ** len(filters)`.
        embedding_dim: int >= 2, the embedding size `D` (FaceNet: 128).
        filters: sequence of ints, output channels of each block.
        convs_per_block: int >= 1.
        batch_norm: bool, BatchNormalization after each convolution.
        name: str, the model name.

    Returns:
        Functional `keras.Model`: uint8 or float images `[batch, H, W, 3]` in
        [0, 255] -> float32 `[batch, D]` of unit L2 norm (output layer
        "embedding").

    Example:
        >>> model = build_embedding_network((32, 32, 3), embedding_dim=64)
        >>> model.compile(optimizer="adam", loss=TripletSemiHardLoss())
    """
    filters = tuple(filters)
    if not filters:
        raise ValueError(f"`filters` must list at least one block width; received {filters!r}.")
    for value in filters:
        check_int("filters", value, minimum=1)
    input_shape = check_image_shape(input_shape, multiple_of=2 ** len(filters), min_size=2)
    embedding_dim = check_int("embedding_dim", embedding_dim, minimum=2)
    convs_per_block = check_int("convs_per_block", convs_per_block, minimum=1)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"`batch_norm` must be True or False; received batch_norm={batch_norm!r}.")

    inputs = keras.Input(input_shape, name="images")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for index, width in enumerate(filters, start=1):
        x = apply_conv_block(x, width, num_convs=convs_per_block, batch_norm=batch_norm,
                             name=f"block{index}")
        x = layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dense(embedding_dim, name="projection")(x)
    # float32 before normalising: a bfloat16 norm would round embeddings off the sphere.
    x = layers.Activation("linear", dtype="float32", name="projection_float32")(x)
    outputs = layers.UnitNormalization(axis=-1, dtype="float32", name="embedding")(x)
    return keras.Model(inputs, outputs, name=name)


def build_siamese_network(embedding_network, name="siamese_network"):
    """Two images through one shared embedding network, returning their distance.

    Args:
        embedding_network: a `keras.Model` images `[batch, H, W, 3]` ->
            embeddings `[batch, D]`, e.g. from `build_embedding_network`; its
            weights are shared by both branches (not copied).
        name: str, the model name.

    Returns:
        Functional `keras.Model` with inputs `images_a` and `images_b` (each
        `[batch, H, W, 3]`) and output `distance` float32 `[batch]`; a pair is
        "the same identity" when the distance is below a threshold chosen on
        the verification ROC (`kerasvision.metrics.verification`).
    """
    if not isinstance(embedding_network, keras.Model):
        raise ValueError(
            "`embedding_network` must be a keras.Model mapping images to embeddings; "
            f"received {type(embedding_network).__name__}."
        )
    shape = embedding_network.input_shape[1:]
    images_a = keras.Input(shape, name="images_a")
    images_b = keras.Input(shape, name="images_b")
    distance = EmbeddingDistance(name="distance")(
        [embedding_network(images_a), embedding_network(images_b)])
    return keras.Model([images_a, images_b], distance, name=name)

