"""The configuration of one training run, as stored in ``RUN_DIR/config.json``.

Values not given fall back to the dataset's training preset
(``keras_csvae.training.presets``); flags override them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import Any

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
VALIDATION_EXAMPLES = 1024  # 32 batches of 32: a per-epoch estimate, not the final evaluation


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a run.

    Attributes:
      dataset: registry name (``csvae data --list``).
      model: model type (``csvae``).
      epochs, batch_size: global batch size, summed over replicas.
      learning_rate, adversary_learning_rate: Adam step sizes of the two optimisers.
      learning_rate_schedule: ``constant``, or ``cosine``: both step sizes
        decay as ``lr · ½(1 + cos(π·t/T))`` over the run's ``T`` steps
        (``epochs`` × batches per epoch), so the last epochs refine rather
        than wander. Such a run resumes only with the ``epochs`` it started with.
      precision: Keras dtype policy, or ``auto`` (``mixed_float16`` on GPUs).
      strategy: ``tf.distribute`` strategy, or ``auto`` (all GPUs mirrored).
      jit_compile: compile the train step with XLA (slower than the plain
        graph for the conv models on CPU: BENCHMARKS.md).
      steps_per_execution: train steps per call of the compiled train
        function; ``None``: the dataset's preset (32 for the small MLP,
        whose steps are so short that Keras's per-call Python work halves
        the speed; 1 otherwise). Callbacks see the loss every that many steps.
      seed: seeds the initial weights, the model's noise and the shuffling.
      validation_examples: the ``val_`` metrics of every epoch are computed
        on the first this many examples of the validation split (``None``:
        all of it). Validation only reports: it changes no weight, and a full
        pass over a large split (10,000 faces) cost as much as half an epoch
        of training (``bench/bench_fit.py``).
      dataset_options: e.g. ``{"image_size": 32}``.
      model_kwargs: constructor arguments of the model (architecture, z_dim,
        betas, prior ...), merged over the dataset's preset.
    """

    dataset: str = "swiss_roll"
    model: str = "csvae"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 1e-3
    adversary_learning_rate: float = 1e-3
    learning_rate_schedule: str = "constant"
    precision: str = "auto"
    strategy: str = "auto"
    jit_compile: bool = False
    steps_per_execution: int | None = None
    seed: int = 0
    validation_examples: int | None = VALIDATION_EXAMPLES
    dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """A copy with the dataset's preset filled in and values checked."""
        from keras_csvae.data import registry
        from keras_csvae.training.presets import preset

        registry.get(self.dataset)  # an unknown name raises DatasetError, listing the known ones
        dataset_preset = preset(self.dataset)
        config = dataclasses.replace(
            self,
            epochs=self.epochs if self.epochs is not None else dataset_preset.epochs,
            batch_size=self.batch_size if self.batch_size is not None else dataset_preset.batch_size,
            steps_per_execution=(
                self.steps_per_execution if self.steps_per_execution is not None else dataset_preset.steps_per_execution
            ),
            # A copy: the preset's lists must not be shared with (and changed through) a run's config.
            model_kwargs={**copy.deepcopy(dataset_preset.model), **self.model_kwargs},
            dataset_options=dict(self.dataset_options),
        )
        if config.validation_examples is not None and (
            isinstance(config.validation_examples, bool)
            or not isinstance(config.validation_examples, int)
            or config.validation_examples < 1
        ):
            raise ValueError(
                f"validation_examples must be a positive integer or None (the whole split), "
                f"got {config.validation_examples!r}."
            )
        if config.epochs < 1 or config.batch_size < 1 or config.steps_per_execution < 1:
            raise ValueError(
                f"epochs, batch_size and steps_per_execution must be ≥ 1, got {config.epochs}, "
                f"{config.batch_size} and {config.steps_per_execution}."
            )
        if config.learning_rate_schedule not in LEARNING_RATE_SCHEDULES:
            raise ValueError(
                f"Unknown learning_rate_schedule {config.learning_rate_schedule!r}; "
                f"use one of {LEARNING_RATE_SCHEDULES}."
            )
        if config.precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {config.precision!r}; use one of {PRECISIONS}.")
        if config.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {config.strategy!r}; use one of {STRATEGIES}.")
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown config keys {sorted(unknown)}.")
        return cls(**values)

    def digest(self) -> str:
        """A short hash of what determines the training result: everything except
        ``epochs`` (a user may extend them on resume), ``steps_per_execution``,
        ``validation_examples``, the model's ``edit_strength``, and
        ``edit_locality`` unless the model is the CSVAE."""
        values = self.to_dict()
        values.pop("epochs")
        values.pop("steps_per_execution")
        values.pop("validation_examples")
        # Where edits put a label switched on: read at edit time, not trained, so a
        # finished run can be re-scored or resumed with another strength. The
        # baselines keep the CSVAE's edit_locality in their config but do not train with it.
        untrained = {"edit_strength"}
        if self.model != "csvae":
            untrained |= {"edit_locality", "edit_locality_saturation"}
        values["model_kwargs"] = {k: v for k, v in values["model_kwargs"].items() if k not in untrained}
        if values["learning_rate_schedule"] == "constant":
            # the default: runs made before the option existed keep their digest
            values.pop("learning_rate_schedule")
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
