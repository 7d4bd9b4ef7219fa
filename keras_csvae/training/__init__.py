"""Training runs: configuration, strategies, resumable ``fit``, run directories (``runs``)."""

from keras_csvae.training.callbacks import TrainingDivergedError
from keras_csvae.training.config import TrainConfig
from keras_csvae.training.runs import RunDirError
from keras_csvae.training.train import build_model, compile_model, train

__all__ = ["TrainConfig", "TrainingDivergedError", "RunDirError", "build_model", "compile_model", "train"]
