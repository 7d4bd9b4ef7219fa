"""Models: the CSVAE and (later) its baselines, sharing ``networks`` and ``base``."""

from keras_csvae.models.base import InputError
from keras_csvae.models.csvae import CSVAE

MODELS = {"csvae": CSVAE}
