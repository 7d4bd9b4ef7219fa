"""The CSVAE and the paper's three baselines, one class each, behind one numpy editing API.

- ``networks``: the encoders, decoders and adversaries every model is made of.
- ``numpy_api``: ``InputError`` and the numpy front end (``NumpyAPI``): input
  checks, batched graph calls, and the shared ``encode``, ``reconstruct``,
  ``manipulate`` and ``edit_variants``.
- ``base``: ``LatentModel`` (the shared hyperparameters, networks and config,
  trace-time checks, seeded noise, export specs) and the training steps of
  ``OneOptimizerModel`` and ``TwoOptimizerModel``.
- ``csvae``: ``CSVAE``; ``baseline``: what the baselines share; ``vae``:
  ``VAE``; ``cond_vae``: ``CondVAE`` and ``CondVAEInfo``.

``MODELS`` maps the names ``TrainConfig.model`` takes to the classes.
"""

from keras_csvae.models.cond_vae import CondVAE, CondVAEInfo
from keras_csvae.models.csvae import CSVAE
from keras_csvae.models.numpy_api import InputError
from keras_csvae.models.vae import VAE

MODELS = {"csvae": CSVAE, "vae": VAE, "condvae": CondVAE, "condvae_info": CondVAEInfo}

__all__ = ["CSVAE", "CondVAE", "CondVAEInfo", "InputError", "MODELS", "VAE"]
