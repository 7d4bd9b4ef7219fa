"""The onnxruntime session factory shared by the ONNX backend and the edge editor."""

from __future__ import annotations

import os


def onnx_session(path, threads: int = 1):
    """A CPU ``onnxruntime.InferenceSession`` tuned for small models on few cores.

    ``threads`` intra-op threads (1-2 beat the default on a 2-core machine) and
    no spinning: spinning threads burn the cores that concurrent requests need.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
