"""The Toronto Face Dataset (TFD): grey faces with 7 expression labels.

TFD is not public: its authors hand out a MATLAB file, usually
``TFD_48x48.mat``, which the user must obtain and pass as option ``path``.
The file must hold (shapes as ``scipy.io.loadmat`` returns them):

- ``images``: ``[N, H, W]`` uint8 grey faces (48x48 in ``TFD_48x48.mat``);
- ``labs_ex``: ``[N]`` or ``[N, 1]`` expression, 1..7 = anger, disgust,
  fear, happy, sad, surprise, neutral; -1 = unlabelled;
- ``labs_id``: ``[N]`` or ``[N, 1]`` identity (person) id;
- ``folds``: ``[N, F]`` (F = 5): in fold ``f``, ``folds[i, f]`` is 1 = train,
  2 = validation, 3 = test, 0 = in no split (the unlabelled images).

MATLAB v7.3 files (HDF5) are read with h5py; they store arrays column-major,
so every array is transposed back to the layout above.

Registered dataset ``tfd``; each example is ``(x, y)``:

- ``x``: float32 ``[S, S, 1]`` in [0, 1] (pixel / 255), ``S = image_size``:
  48 (default, the file's own size: 48 = 6 x 8 suits the conv model's three
  stride-2 convolutions), or 32 / 64 (bilinear resize; 64 matches CelebA).
- ``y``: float32 ``[7]``, the expression one-hot. Unlabelled images are
  dropped.

Options: ``path`` (required), ``fold`` (0..4, default 0), ``image_size``.

For the paper's second metric (MSE between an edited face and a real face of
the same person with the target expression), ``tfd_identity_pairs`` returns
the split with identity ids and the index pairs (same person, different
expression).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from keras_csvae.data._images import check_image_size, resize_array
from keras_csvae.data.registry import Dataset, DatasetError, DatasetInfo, register_dataset

EXPRESSIONS = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_SIZES = (32, 48, 64)
DEFAULT_IMAGE_SIZE = 48
OPTIONS = ("path", "fold", "image_size")
REQUIRED_KEYS = ("images", "labs_ex", "labs_id", "folds")
# Values of folds[:, fold] per split.
SPLIT_CODES = {"train": 1, "validation": 2, "test": 3}
UNLABELLED = -1


@dataclasses.dataclass(frozen=True)
class _LabelledFaces:
    """The labelled rows of a TFD file (unlabelled rows dropped on reading)."""

    images: np.ndarray  # [M, H, W], as stored
    expression: np.ndarray  # [M] int, 0..6 (file value - 1)
    identity: np.ndarray  # [M] int
    folds: np.ndarray  # [M, F] int


@dataclasses.dataclass(frozen=True)
class TFDIdentitySplit:
    """One TFD split with identities, for same-person comparisons.

    Attributes:
      x: float32 ``[n, S, S, 1]``, as ``load_arrays("tfd", ...)`` returns.
      y: float32 ``[n, 7]`` expression one-hot.
      identity: int64 ``[n]`` person ids from ``labs_id``.
      pairs: int64 ``[P, 2]`` index pairs ``(i, j)``, ``i != j``, of the same
        person with different expressions; both orders are listed, so ``i``
        can be edited towards the expression of ``j`` and compared with it.
    """

    x: np.ndarray
    y: np.ndarray
    identity: np.ndarray
    pairs: np.ndarray


def _read_mat(path: str) -> dict[str, np.ndarray]:
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # MATLAB v7.3
        with h5py.File(path, "r") as f:
            # Column-major storage: reversing the axes restores MATLAB's shapes.
            return {key: np.asarray(f[key]).T for key in REQUIRED_KEYS if key in f}
    return scipy.io.loadmat(path, variable_names=REQUIRED_KEYS)


def _as_vector(name: str, array: np.ndarray, n: int, path: str) -> np.ndarray:
    array = np.asarray(array)
    if array.size != n or (array.ndim == 2 and 1 not in array.shape) or array.ndim > 2:
        raise DatasetError(f"TFD file {path!r}: {name} must have shape [{n}] or [{n}, 1]; got {array.shape}.")
    return array.reshape(n).astype(np.int64)


@functools.lru_cache(maxsize=2)
def _labelled_faces(path: str, _mtime_ns: int, _size: int) -> _LabelledFaces:
    """Reads and checks a TFD file once; the stat arguments invalidate the cache."""
    try:
        raw = _read_mat(path)
    except Exception as error:  # any parse failure means the file is not a usable .mat
        raise DatasetError(
            f"Cannot read TFD file {path!r} as a MATLAB .mat file ({type(error).__name__}: {error}). "
            f"It may be corrupt or truncated; TFD is distributed as TFD_48x48.mat."
        ) from error
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise DatasetError(
            f"TFD file {path!r} lacks {missing}; a TFD .mat holds {list(REQUIRED_KEYS)} "
            f"(found {sorted(k for k in raw if not k.startswith('__'))})."
        )
    images = np.asarray(raw["images"])
    if images.ndim != 3 or images.shape[0] == 0 or not np.issubdtype(images.dtype, np.number):
        raise DatasetError(f"TFD file {path!r}: images must be numeric [N, H, W]; got {images.dtype} {images.shape}.")
    n = images.shape[0]
    expression = _as_vector("labs_ex", raw["labs_ex"], n, path)
    identity = _as_vector("labs_id", raw["labs_id"], n, path)
    folds = np.asarray(raw["folds"])
    if folds.ndim != 2 or folds.shape[0] != n:
        raise DatasetError(f"TFD file {path!r}: folds must have shape [{n}, F]; got {folds.shape}.")
    valid = (expression == UNLABELLED) | ((expression >= 1) & (expression <= len(EXPRESSIONS)))
    if not valid.all():
        raise DatasetError(
            f"TFD file {path!r}: labs_ex must be 1..{len(EXPRESSIONS)} or -1 (unlabelled); "
            f"found {sorted(set(expression[~valid].tolist()))[:5]}."
        )
    keep = expression != UNLABELLED
    return _LabelledFaces(
        images=images[keep],
        expression=expression[keep] - 1,
        identity=identity[keep],
        folds=folds[keep].astype(np.int64),
    )


def _load_file(path) -> _LabelledFaces:
    if path is None:
        raise DatasetError(
            "Dataset 'tfd' needs option path: the Toronto Face Dataset .mat file (e.g. TFD_48x48.mat), "
            "which its authors distribute on request; it cannot be downloaded here."
        )
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(path):
        raise DatasetError(f"TFD file {path!r} does not exist (option path; expected e.g. TFD_48x48.mat).")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"TFD file {path!r} is not readable (check its permissions).")
    stat = os.stat(path)
    return _labelled_faces(path, stat.st_mtime_ns, stat.st_size)


def _check_fold(fold, num_folds: int) -> int:
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < num_folds:
        raise DatasetError(f"Dataset 'tfd': fold must be an integer in 0..{num_folds - 1}; got {fold!r}.")
    return int(fold)


def _split_rows(faces: _LabelledFaces, split: str, fold) -> np.ndarray:
    fold = _check_fold(fold, faces.folds.shape[1])
    return np.flatnonzero(faces.folds[:, fold] == SPLIT_CODES[split])


def _to_x(images: np.ndarray, image_size: int) -> np.ndarray:
    """Stored ``[n, H, W]`` -> float32 ``[n, S, S, 1]`` in [0, 1]."""
    x = images.astype(np.float32)
    # TFD ships uint8; a float file may already be scaled to [0, 1].
    if np.issubdtype(images.dtype, np.integer) or (x.size and x.max() > 1.0):
        x /= 255.0
    return resize_array(x[..., None], image_size)


def _one_hot(expression: np.ndarray) -> np.ndarray:
    return np.eye(len(EXPRESSIONS), dtype=np.float32)[expression]


def _info(*, path=None, fold=0, image_size=DEFAULT_IMAGE_SIZE):
    # Checked without reading the file, so that --list and model building stay cheap.
    image_size = check_image_size("tfd", image_size, IMAGE_SIZES)
    return DatasetInfo(
        name="tfd",
        input_shape=(image_size, image_size, 1),
        label_names=EXPRESSIONS,
        description=f"Toronto Face Dataset {image_size}x{image_size} grey, 7 expressions (needs path=TFD .mat)",
    )


def _arrays_with_identity(split, *, path=None, fold=0, image_size=DEFAULT_IMAGE_SIZE):
    image_size = check_image_size("tfd", image_size, IMAGE_SIZES)
    faces = _load_file(path)
    rows = _split_rows(faces, split, fold)
    return _to_x(faces.images[rows], image_size), _one_hot(faces.expression[rows]), faces.identity[rows]


def _arrays(split, **options):
    x, y, _ = _arrays_with_identity(split, **options)
    return x, y


def same_person_pairs(identity: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index pairs ``(i, j)`` with ``identity[i] == identity[j]`` and different one-hot ``y``.

    Returns int64 ``[P, 2]``, both orders of every pair, sorted.
    """
    identity = np.asarray(identity)
    label = np.argmax(np.asarray(y), axis=-1)
    pairs = []
    for person in np.unique(identity):
        rows = np.flatnonzero(identity == person)
        i, j = np.meshgrid(rows, rows, indexing="ij")
        differ = label[i] != label[j]
        pairs.append(np.stack([i[differ], j[differ]], axis=-1))
    if not pairs:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(pairs).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def tfd_identity_pairs(path, split="test", *, fold=0, image_size=DEFAULT_IMAGE_SIZE) -> TFDIdentitySplit:
    """A TFD split with identities and same-person, different-expression pairs.

    ``x`` and ``y`` equal ``load_arrays("tfd", split, path=..., fold=..., image_size=...)``.
    """
    if split not in SPLIT_CODES:
        raise DatasetError(f"Unknown split {split!r}; use one of {tuple(SPLIT_CODES)}.")
    x, y, identity = _arrays_with_identity(split, path=path, fold=fold, image_size=image_size)
    return TFDIdentitySplit(x=x, y=y, identity=identity, pairs=same_person_pairs(identity, y))


register_dataset(
    "tfd",
    Dataset(
        info_fn=_info,
        arrays_fn=_arrays,
        options=OPTIONS,
    ),
)
