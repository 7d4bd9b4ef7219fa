"""The numpy front end every model shares: input checks, batched graph calls,
and one signature for ``encode``, ``reconstruct``, ``manipulate`` and
``edit_variants``, so that callers need not know which model they hold.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


class InputError(ValueError):
    """Inputs that do not fit the model: shapes, label counts, values."""


class NumpyAPI:
    """Numpy in, numpy out, on top of a model's tensor functions.

    Shapes: ``x`` ``[n, *data_shape]``; ``y`` (the source labels, what ``x``
    shows) and ``y_target`` (the labels an edit should give it) ``[n, k]``
    in {0, 1}, where one row of ``y_target`` stands for every ``x``.

    A model (a ``LatentModel``, which provides ``data_shape``, ``num_labels``
    and ``label_names``) defines:

    - ``encode_tensors(x, y)`` (dict of ``[batch, ·]`` codes) and
      ``reconstruct_tensors(x, y)`` ``[batch, *data_shape]``; ``y`` is ``None``
      unless a network sees labels;
    - ``encoder_uses_labels`` / ``decoder_uses_labels``: whether ``encode`` and
      ``reconstruct`` need ``y``;
    - ``edit_rules``: ``{rule: needs y}``, the ways it edits, in order of
      preference (see ``manipulate``);
    - ``_manipulate(x, y_target, y, rule, batch_size, **options)`` and
      ``_edit_variants(x, i, n, y, batch_size, **options)`` on checked float32
      arrays (``y`` ``None`` when not given), ``options`` being its own
      keyword-only knobs.
    """

    encoder_uses_labels = False
    decoder_uses_labels = False
    edit_rules: dict[str, bool] = {}

    # -- the shared signatures -------------------------------------------------------------------
    def encode(self, x, y=None, batch_size=256):
        """The posterior parameters of ``x``: dict of ``[n, ·]`` arrays (``z_mean``,
        ``z_log_var``, and for the CSVAE ``w_mean``, ``w_log_var``).

        ``y`` is required when an encoder sees labels (CSVAE, CondVAE), else checked and ignored.
        """
        x, y = self.checked_inputs(x, y, self.encoder_uses_labels, "encode")
        return self.run_batched_xy(self.encode_tensors, x, y if self.encoder_uses_labels else None, batch_size)

    def reconstruct(self, x, y=None, batch_size=256):
        """Decodes the posterior means of ``x``: ``[n, *data_shape]``.

        ``y`` is required when a network sees labels (all but the VAE), else checked and ignored.
        """
        needed = self.encoder_uses_labels or self.decoder_uses_labels
        x, y = self.checked_inputs(x, y, needed, "reconstruct")
        return self.run_batched_xy(self.reconstruct_tensors, x, y if needed else None, batch_size)

    def manipulate(self, x, y_target, y=None, rule=None, batch_size=256, **options):
        """Edits ``x`` ``[n, *data_shape]`` to have labels ``y_target``; returns ``[n, *data_shape]``.

        ``rule`` (default: the model's first that the given inputs allow):

        - CSVAE: ``"switched"`` (needs ``y``): only the subspaces ``W_j`` of
          labels with ``y_target_j ≠ y_j`` move to the target prior's mean
          (a label switched on: ``edit_strength`` times as far from the
          absent mean); ``"prior"``: every ``W_j`` there (the paper's rule
          at ``edit_strength`` 1).
        - VAE: ``"switched"`` (needs ``y``): ``z' = z + Σ_j (y_target_j − y_j)·d_j``
          with attribute vectors ``d_j``; ``"projection"``: ``z``'s coordinate
          along every ``d̂_j`` set to the target class mean's.
        - CondVAE (needs ``y``), CondVAEInfo: ``"relabel"``: the posterior mean
          of ``z`` decoded with ``y_target``.

        ``options``: the model's keyword-only knobs; the CSVAE's are
        ``w_points``, ``sample`` and ``seed`` (``CSVAE.edited_codes``).
        Deterministic unless a knob asks for noise.
        """
        x, y_target, y, rule = self.edit_inputs(x, y_target, y, rule)
        return self._manipulate(x, y_target, y, rule, batch_size, **options)

    def edit_variants(self, x, label, n=9, y=None, batch_size=256, **options):
        """``n`` different edits of every ``x`` that switch ``label`` (name or index) on.

        How they differ is the model's style control: the CSVAE's points of a
        grid over ``W_label`` (``√n × √n``, so ``n`` is rounded to a square),
        the VAE's strengths along the attribute vector, the conditional
        baselines' samples of ``q(z | ·)``. With ``y`` the other labels keep
        their values; without, they are off. ``y`` is required where every edit
        rule needs it (CondVAE). ``options``: the model's keyword-only knobs.

        Returns ``[n, n_x, *data_shape]``.
        """
        i = self.label_index(label)
        if int(n) < 1:
            raise InputError(f"edit_variants needs n ≥ 1 variants, got {n}.")
        x, y = self.checked_inputs(x, y, self.source_labels_required, "edit_variants")
        return self._edit_variants(x, i, int(n), y, batch_size, **options)

    def _manipulate(self, x, y_target, y, rule, batch_size, **options):
        raise NotImplementedError(f"{type(self).__name__} does not define manipulate.")

    def _edit_variants(self, x, i, n, y, batch_size, **options):
        raise NotImplementedError(f"{type(self).__name__} does not define edit_variants.")

    # -- edit rules --------------------------------------------------------------------------------
    @property
    def source_labels_required(self):
        """Whether every edit rule needs the source labels ``y``."""
        return all(self.edit_rules.values())

    def edit_rule(self, rule, y):
        """``rule``, or the first of ``edit_rules`` usable with or without ``y``; ``InputError`` if none."""
        if rule is None:
            rule = next((r for r, needs_y in self.edit_rules.items() if y is not None or not needs_y), None)
            if rule is None:
                raise self.missing_labels_error("manipulate")
        if rule not in self.edit_rules:
            raise InputError(f"Unknown edit rule {rule!r}; use one of {tuple(self.edit_rules)}.")
        if self.edit_rules[rule] and y is None:
            without_y = [r for r, needs_y in self.edit_rules.items() if not needs_y]
            hint = f" (or use rule={without_y[0]!r})" if without_y else ""
            raise InputError(f"The {rule!r} edit rule needs the source labels y{hint}.")
        return rule

    def edit_inputs(self, x, y_target, y, rule):
        """Checked ``(x, y_target, y, rule)`` of an edit (``check_edit_arrays``, ``edit_rule``)."""
        rule = self.edit_rule(rule, y)
        return (*self.check_edit_arrays(x, y_target, y), rule)

    # -- input checks ------------------------------------------------------------------------------
    def check_arrays(self, x=None, y=None):
        """Eager check of numpy inputs: shapes, finite values, labels in {0, 1}.

        Returns float32 arrays; one row of ``y`` is repeated for every ``x``.
        """
        out = []
        if x is not None:
            x = np.asarray(x, dtype=np.float32)
            if x.shape[1:] != self.data_shape:
                raise InputError(
                    f"x has shape {x.shape}; this model expects [batch, {', '.join(map(str, self.data_shape))}]."
                )
            if not np.all(np.isfinite(x)):
                raise InputError("x contains NaN or infinite values.")
            out.append(x)
        if y is not None:
            y = np.asarray(y, dtype=np.float32)
            if y.ndim == 1 and self.num_labels > 1 and y.shape[0] == self.num_labels:
                y = y[None]
            if y.ndim == 1:
                y = y[:, None]
            if y.shape[-1] != self.num_labels:
                raise InputError(
                    f"y has {y.shape[-1]} label(s) per example; this model has {self.num_labels}: "
                    f"{', '.join(self.label_names)}."
                )
            if not np.all((y == 0) | (y == 1)):
                raise InputError("Labels must be 0 or 1; found other values in y.")
            out.append(y)
        if x is not None and y is not None:
            out[1] = self.repeat_rows(out[1], len(out[0]), "examples in x", "label rows in y")
        return out[0] if len(out) == 1 else tuple(out)

    @staticmethod
    def repeat_rows(rows, n, counted, found):
        """``rows`` with a single row repeated ``n`` times, or ``InputError``
        ("``n`` ``counted`` but ``len(rows)`` ``found``") unless it has ``n`` rows."""
        if len(rows) == 1:
            return np.repeat(rows, n, axis=0)
        if len(rows) != n:
            raise InputError(f"{n} {counted} but {len(rows)} {found}.")
        return rows

    def check_label_rows(self, y, n, counted, found="label rows"):
        """Labels ``y`` checked (``check_arrays``) for ``n`` rows: float32 ``[n, k]``."""
        return self.repeat_rows(self.check_arrays(y=y), n, counted, found)

    def check_codes(self, codes, dim, name="z"):
        """Eager check of latent codes: float32 ``[n, dim]`` or ``InputError``."""
        codes = np.asarray(codes, np.float32)
        if codes.ndim != 2 or codes.shape[-1] != dim:
            raise InputError(f"{name} has shape {codes.shape}; this model expects [n, {dim}].")
        if not np.all(np.isfinite(codes)):
            raise InputError(f"{name} contains NaN or infinite values.")
        return codes

    def check_edit_arrays(self, x, y_target, y=None):
        """Checks the inputs of an edit: ``x`` ``[n, *data_shape]``, ``y_target``
        ``[n, k]`` (one row is repeated for every ``x``) and optional source
        labels ``y`` ``[n, k]``. Returns float32 ``(x, y_target, y)``.
        """
        x = self.check_arrays(x)
        y_target = self.check_label_rows(y_target, len(x), "examples in x", "target label rows")
        if y is not None:
            x, y = self.check_arrays(x, y)
        return x, y_target, y

    def checked_inputs(self, x, y, needed, what):
        """Checked ``(x, y)``; ``y`` stays ``None`` if not given, which is an
        ``InputError`` when ``needed`` by the method ``what``."""
        if y is None:
            if needed:
                raise self.missing_labels_error(what)
            return self.check_arrays(x), None
        return self.check_arrays(x, y)

    def missing_labels_error(self, what):
        return InputError(
            f"{type(self).__name__}.{what} needs the source labels y ([n, {self.num_labels}]: "
            f"{', '.join(self.label_names)})."
        )

    def label_index(self, label):
        """Index of a label given by name or index."""
        if isinstance(label, str):
            if label not in self.label_names:
                raise InputError(f"Unknown label {label!r}; labels: {', '.join(self.label_names)}.")
            return self.label_names.index(label)
        label = int(label)
        if not 0 <= label < self.num_labels:
            raise InputError(f"Label index {label} out of range 0..{self.num_labels - 1}.")
        return label

    # -- batched graph calls -----------------------------------------------------------------------
    def run_batched(self, fn, arrays, batch_size=256):
        """Applies ``fn(*tensors) -> tensor or dict`` over ``arrays`` in batches; numpy out.

        A method of this model runs as a cached ``tf.function`` (``graph_function``).
        """
        fn = self.graph_function(fn)
        n = len(arrays[0])
        outputs = []
        for start in range(0, n, batch_size):
            chunk = [tf.convert_to_tensor(a[start : start + batch_size]) for a in arrays]
            outputs.append(keras.tree.map_structure(lambda t: np.asarray(t), fn(*chunk)))
        if not outputs:
            raise InputError("Empty input: nothing to compute.")
        return keras.tree.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)

    def run_batched_xy(self, fn, x, y, batch_size=256):
        """``run_batched`` of ``fn(x, y)``, or of ``fn(x)`` when ``y`` is ``None``."""
        return self.run_batched(fn, (x,) if y is None else (x, y), batch_size)

    def graph_function(self, method):
        """``method`` (a method of this model on tensors) as a ``tf.function``
        cached on the model; anything else is returned as it is.

        Running the networks as one graph rather than layer by layer in eager
        mode makes the numpy editing API 4× faster at batch 1 (``manipulate``
        of the 64 px faces model: 18 → 4.4 ms; BENCHMARKS.md).
        ``reduce_retracing`` keeps one trace for every batch size.
        """
        func = getattr(method, "__func__", None)
        if func is None or getattr(method, "__self__", None) is not self:
            return method
        cache = self.__dict__.setdefault("_graph_functions", {})  # not a tracked attribute
        if func not in cache:
            cache[func] = tf.function(method, reduce_retracing=True)
        return cache[func]
