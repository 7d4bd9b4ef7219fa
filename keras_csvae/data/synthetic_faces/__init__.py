"""``synthetic_faces``: procedural cartoon faces with ground-truth counterfactuals.

A benchmark made for the CSVAE: each face has three binary attributes (the
labels ``y``), each attribute comes in several discrete *styles* plus
continuous variation (what the CSVAE's ``w`` subspace should capture), and
the rest of the face varies through nuisance factors independent of the
labels (what ``z`` should capture). Because the faces are rendered from
factors, the true counterfactual of any face is known exactly: the same
factors with one attribute switched, which changes no pixel outside that
attribute's mask.

Attributes (label order) and their styles::

    glasses      round, square, sunglasses
    smile        closed, open, grin      (off: a neutral straight mouth)
    facial_hair  moustache, goatee, full_beard

Modules, in the order data flows through them:

- ``factors``: attributes, styles, the factors dict, its sampling from a seed
  and counterfactual factors;
- ``rendering``: drawing primitives and ``FaceRenderer``, which paints
  factors into uint8 images and attribute masks;
- ``dataset``: ``SyntheticFaces`` (sampling + rendering), the splits and
  their seeds, and the registry entry with its ``tf.data`` pipeline.

Importing this package registers the dataset.
"""

from keras_csvae.data.synthetic_faces.dataset import (
    DEFAULT_SPLIT_SIZES,
    IMAGE_SIZES,
    SPLIT_SEEDS,
    SyntheticFaces,
    dataset_info,
    load_arrays,
    load_tf_data,
    split_size,
)
from keras_csvae.data.synthetic_faces.factors import (
    ATTRIBUTES,
    FACTOR_NAMES,
    HAIR_STYLES,
    NUISANCE_NAMES,
    STYLES,
    slice_factors,
)

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_SPLIT_SIZES",
    "FACTOR_NAMES",
    "HAIR_STYLES",
    "IMAGE_SIZES",
    "NUISANCE_NAMES",
    "SPLIT_SEEDS",
    "STYLES",
    "SyntheticFaces",
    "dataset_info",
    "load_arrays",
    "load_tf_data",
    "slice_factors",
    "split_size",
]
