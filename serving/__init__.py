"""Serving an export: a TF Serving-compatible local server, its client, and
the files to run the real ``tensorflow_model_server``.

    csvae serve --export exports/faces                 # http://127.0.0.1:8501
    from serving.client import TFServingClient         # predict, status, metadata, manipulate_image

Modules, one job each: ``signatures`` (what a model offers), ``errors``
(HTTP status of each error), ``backends`` (onnxruntime / TensorFlow, versions),
``batching`` (dynamic micro-batching), ``protocol`` (TF Serving REST and Open
Inference Protocol v2 JSON), ``server`` (aiohttp routes), ``command``
(``csvae serve``), ``client``. Importing ``serving`` loads none of them.
"""
