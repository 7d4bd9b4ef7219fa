"""Models: the CSVAE and (later) its baselines, sharing ``networks`` and ``base``."""

from keras_csvae.models.base import InputError
from keras_csvae.models.csvae import CSVAE
from keras_csvae.models.cond_vae import CondVAE, CondVAEInfo
from keras_csvae.models.vae import VAE

MODELS = {"csvae": CSVAE, "vae": VAE, "condvae": CondVAE, "condvae_info": CondVAEInfo}
