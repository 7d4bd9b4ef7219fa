"""Callbacks that make a run resumable and stop it when it diverges."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras

from keras_csvae.io import write_json


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


class StopOnNaN(keras.callbacks.Callback):
    """Raises ``TrainingDivergedError`` at the first non-finite batch loss.

    Unlike ``keras.callbacks.TerminateOnNaN`` it fails loudly, before the
    checkpoint callback could store the broken weights.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise TrainingDivergedError(
                f"The loss became {float(loss)} at batch {batch}. Lower the learning rate, "
                "check the data for extreme values, or use float32; the last good checkpoint is kept."
            )


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model (weights and both optimisers) and the history after
    every epoch, so that re-running the same command resumes where a killed
    run stopped.

    Layout of ``directory``: ``epoch_NNNN.keras`` and ``state.json``
    (``{"epoch": completed epochs, "model": file name, "history": [...]}``).
    Each history entry holds the epoch's logs and ``seconds``, its wall time
    (training and validation), so a resumed run still knows what it cost.
    ``state.json`` is replaced atomically after its model file is complete,
    so whatever it names is whole; a kill mid-epoch loses that epoch only.

    Args:
      directory: where checkpoints go (created if needed).
      history: the entries of epochs already done (when resuming).
      write: False on non-chief workers of a multi-worker job.
    """

    def __init__(self, directory, history=(), write=True):
        super().__init__()
        self.directory = Path(directory)
        self.history = list(history)
        self.write = write

    @staticmethod
    def load_state(directory):
        path = Path(directory) / "state.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        entry["seconds"] = round(time.perf_counter() - self._epoch_start, 1)
        bad = [k for k, v in entry.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDivergedError(f"Epoch {epoch + 1} ended with non-finite {bad}; stopping.")
        self.history.append(entry)
        if not self.write:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epoch + 1:04d}.keras"
        self.model.save(self.directory / name)
        previous = self.load_state(self.directory)
        write_json(self.directory / "state.json", {"epoch": epoch + 1, "model": name, "history": self.history})
        if previous and previous["model"] != name:
            (self.directory / previous["model"]).unlink(missing_ok=True)
