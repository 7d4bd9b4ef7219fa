"""Training runs: configuration, strategies, resumable ``fit``."""

from keras_csvae.training.callbacks import TrainingDivergedError
from keras_csvae.training.config import TrainConfig
from keras_csvae.training.train import RunDirError, build_model, compile_model, train

__all__ = ["TrainConfig", "TrainingDivergedError", "RunDirError", "build_model", "compile_model", "train"]
