"""Mixed precision, MirroredStrategy over two logical CPUs, and two-process
MultiWorkerMirroredStrategy on 127.0.0.1: the GPU and multi-machine code
paths, proven on CPU."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import compiled, random_data, tiny_csvae


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_policies_train_with_float32_distributions(policy):
    keras.mixed_precision.set_global_policy(policy)
    # edit_locality: its extra decoder pass runs in the policy too
    model = compiled(tiny_csvae(data_shape=(16, 16, 3), num_labels=2, edit_locality=0.05))
    scaled = policy == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    assert isinstance(model.adversary_optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    x, y = random_data(32, (16, 16, 3), 2)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    assert all(np.isfinite(v).all() for v in history.values()) and "edit_change" in history
    assert model.z_encoder.get_layer("z_encoder_conv_0").compute_dtype == policy.split("_")[1]
    out = model((x[:2], y[:2]))
    assert {t.dtype for t in out.values()} == {tf.float32}
    assert model.manipulate(x[:2], [1, 0]).dtype == np.float32


def _two_cpu_mirrored():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.fail("conftest should have made two logical CPU devices")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


def test_mirrored_two_replicas_train_with_different_noise():
    strategy = _two_cpu_mirrored()
    with strategy.scope():
        model = compiled(tiny_csvae(data_shape=(3,), num_labels=1))
    assert strategy.num_replicas_in_sync == 2
    seeds = strategy.run(lambda: model.step_seed(0))
    a, b = (np.array(s) for s in strategy.experimental_local_results(seeds))
    assert not np.array_equal(a, b), "replicas must draw different noise"

    x, y = random_data(64, (3,), 1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = model.fit(ds, epochs=2, verbose=0, shuffle=False).history  # a dataset orders itself
    assert np.isfinite(history["loss"]).all()
    assert model.optimizer.iterations.numpy() == 8
    # Mirrored variables stay identical on both replicas.
    for var in model.trainable_weights[:3]:
        values = [np.array(v) for v in var.value.values] if hasattr(var.value, "values") else [np.array(var)]
        for v in values[1:]:
            np.testing.assert_array_equal(values[0], v)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


WORKER = """
import sys, hashlib, numpy as np
from keras_csvae.training import TrainConfig, train
config = TrainConfig(dataset="swiss_roll", epochs=2, batch_size=64, strategy="multi_worker",
                     precision="float32", dataset_options={"num_examples": 512})
model = train(config, sys.argv[1], verbose=0)
digest = hashlib.sha256(b"".join(np.array(w).tobytes() for w in model.weights)).hexdigest()
print("WEIGHTS", digest, int(model.optimizer.iterations.numpy()))
"""


def test_multi_worker_two_processes_train_one_model(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(tmp_path / "run")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        # Each worker is waited for in turn: the chief may finish first (it was
        # killed here once when the other was still shutting down).
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            outputs.append([line for line in out.splitlines() if line.startswith("WEIGHTS")][0].split())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # Synchronous data-parallel training: both workers end with the same weights.
    assert outputs[0][1] == outputs[1][1]
    # 512 examples / global batch 64 = 8 steps per epoch, 2 epochs.
    assert outputs[0][2] == "16"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert (tmp_path / "run" / "model.keras").exists()
