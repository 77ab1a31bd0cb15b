"""Argument checks shared by every module, and the helper that writes shared argument docs once.

Each check raises a `ValueError` whose message names the argument, the value it
received and what was expected, so that users see what to fix instead of a
stack trace from deep inside TensorFlow. `fill_doc` inserts argument docs that
several classes or builders share into their docstrings.
"""

import math
import numbers

IGNORE_LABEL = 255
"""Mask value that losses and metrics skip (the PASCAL VOC "void" label)."""


def check_choice(name, value, choices):
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {sorted(choices)}; received {name}={value!r}."
        )
    return value


def check_int(name, value, minimum=None, maximum=None):
    """Raise unless `value` is an integer within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer; received {name}={value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; received {name}={value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}; received {name}={value}.")
    return int(value)


def check_float(name, value, minimum=None, maximum=None, strict_minimum=False):
    """Raise unless `value` is a real number in range (`strict_minimum`: > minimum)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a number; received {name}={value!r}.")
    if minimum is not None:
        if strict_minimum and value <= minimum:
            raise ValueError(f"`{name}` must be > {minimum}; received {name}={value}.")
        if not strict_minimum and value < minimum:
            raise ValueError(f"`{name}` must be >= {minimum}; received {name}={value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}; received {name}={value}.")
    return float(value)


def check_seed(seed, allow_none=False):
    """Raise unless `seed` is an integer >= 0 (or None when `allow_none`).

    Returns:
        The seed as an int, or None.
    """
    if seed is None and allow_none:
        return None
    return check_int("seed", seed, minimum=0)


# dtype names (numpy's and TensorFlow's `.name`, Keras' strings) of tensors
# holding numbers; strings and Python objects are everything else.
_NUMERIC_DTYPE_PREFIXES = ("bool", "int", "uint", "float", "bfloat", "complex")


def check_numeric_dtype(name, x, expected="numbers"):
    """Raise unless the array or tensor `x` holds numbers (not strings or objects).

    Args:
        name: str, the argument name used in the error message.
        x: numpy array, tensor or anything with a `dtype` (else unchecked).
        expected: str, what the values should be, for the message.

    Returns:
        `x`, unchanged.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return x
    dtype_name = str(getattr(dtype, "name", dtype))
    if not dtype_name.startswith(_NUMERIC_DTYPE_PREFIXES):
        raise ValueError(
            f"`{name}` must hold {expected}; received {name} of dtype {dtype_name}."
        )
    return x


def check_label_shape(y_true, y_pred, true_name="y_true", pred_name="y_pred"):
    """Raise unless labels `[batch, H, W]` match the leading axes of predictions.

    Args:
        y_true: tensor or array of labels `[batch, height, width]`.
        y_pred: tensor or array `[batch, height, width, ...]` (scores or labels).
        true_name, pred_name: argument names used in the error message.

    Unknown sizes (None, inside a traced function) pass: the check runs on
    static shapes, so it costs nothing at run time.
    """
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    for got, want in zip(true_shape, pred_shape[: len(true_shape)]):
        if got is not None and want is not None and got != want:
            raise ValueError(
                f"`{true_name}` [batch, height, width] must match the batch size, height and "
                f"width of `{pred_name}` {pred_shape[: len(true_shape)]}; received "
                f"{true_name} shape {true_shape} and {pred_name} shape {pred_shape}."
            )
    return y_true


def check_num_classes(num_classes):
    """Raise unless `num_classes` is an integer >= 2."""
    return check_int("num_classes", num_classes, minimum=2)


def check_ignore_label(ignore_label):
    """Raise unless `ignore_label` is None (skip nothing) or an integer label."""
    if ignore_label is None:
        return None
    return check_int("ignore_label", ignore_label)


def check_image_shape(input_shape, multiple_of=1, min_size=1, name="input_shape"):
    """Validate an `(height, width, 3)` input shape.

    Args:
        input_shape: tuple `(height, width, channels)`; height/width may be None
            (any size) when `multiple_of` is 1.
        multiple_of: int, the network stride both sizes must be divisible by.
        min_size: int, smallest height/width the network accepts.
        name: str, the argument name used in error messages.

    Returns:
        The shape as a tuple.
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(
            f"`{name}` must be a tuple (height, width, 3); received {name}={input_shape!r}."
        ) from None
    if len(shape) != 3:
        raise ValueError(
            f"`{name}` must have 3 entries (height, width, channels); "
            f"received {name}={input_shape!r}."
        )
    if shape[-1] != 3:
        raise ValueError(
            f"`{name}` must end with 3 channels (RGB); received {name}={input_shape!r}."
        )
    for size in shape[:2]:
        if size is None:
            continue
        if size < min_size:
            raise ValueError(
                f"`{name}` height and width must be >= {min_size}; "
                f"received {name}={input_shape!r}."
            )
        if size % multiple_of:
            raise ValueError(
                f"`{name}` height and width must be multiples of the network stride "
                f"{multiple_of}; received {name}={input_shape!r} "
                f"(nearest valid size: {max(multiple_of, round(size / multiple_of) * multiple_of)})."
            )
    return shape


def check_image_batch(images, name="images"):
    """Raise unless `images` (array-like) is a rank-4 batch with 3 channels."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4:
        raise ValueError(
            f"`{name}` must be a rank-4 batch [batch, height, width, 3]; "
            f"received shape {shape}."
        )
    if shape[-1] != 3:
        raise ValueError(
            f"`{name}` must have 3 channels (RGB) in its last axis; received shape {shape}."
        )
    if shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch (shape {shape}).")
    return images


def fill_doc(**docs):
    """Decorator: replaces each `{key}` in the object's docstring with `docs[key]`.

    Argument docs shared by several classes or builders are written once and
    inserted where the docstring says `{key}`; write the shared text with the
    indentation of the place it goes to (continuation lines indented as in an
    `Args:` section). Plain replacement, not `str.format`, so other braces in the
    docstring (dicts in examples) stay as they are; under `python -OO`
    (docstrings stripped) it does nothing.

    Example:

    ```python
    @fill_doc(common_args="name: str, the metric name.")
    class MyMetric(keras.metrics.Metric):
        '''One line.

        Args:
            {common_args}
        '''
    ```
    """

    def fill(obj):
        if obj.__doc__:
            doc = obj.__doc__
            for key, text in docs.items():
                placeholder = "{" + key + "}"
                if placeholder not in doc:
                    raise ValueError(
                        f"The docstring of {obj.__qualname__} has no {placeholder} to fill."
                    )
                doc = doc.replace(placeholder, text)
            obj.__doc__ = doc
        return obj

    return fill


def check_pixel_range(pixel_range):
    """Raise unless `pixel_range` is `(low, high)` with finite low < high; returns floats."""
    try:
        low, high = (float(value) for value in pixel_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"`pixel_range` must be a pair (low, high); received pixel_range={pixel_range!r}."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(
            "`pixel_range` must be finite (low, high) with high > low; received "
            f"pixel_range={pixel_range!r}."
        )
    return low, high
