"""Running an export: the TensorFlow-free runtime, the edge editor, a TF
Serving-compatible local server, its client, and the files to run the real
``tensorflow_model_server``.

    csvae serve --export exports/faces                 # http://127.0.0.1:8501
    csvae edit face.png --model exports/faces --set glasses=1 --out edited.png
    from serving.edge import Editor                    # editing in an app, onnxruntime only
    from serving.client import TFServingClient         # predict, status, metadata, manipulate_image

Modules, one job each: ``runtime`` (the artefact contract, picture codec and
onnxruntime sessions: what export writes and everything here reads),
``edge`` (the editor and ``csvae edit``), ``signatures`` (what a model
offers), ``errors`` (HTTP status of each error), ``backends`` (onnxruntime /
TensorFlow, versions), ``batching`` (dynamic micro-batching), ``protocol`` (TF
Serving REST and Open Inference Protocol v2 JSON), ``server`` (aiohttp
routes), ``command`` (``csvae serve``), ``client``. Importing ``serving``
loads none of them; nothing here imports ``keras_csvae``, and only
``backends.savedmodel`` imports TensorFlow.
"""
