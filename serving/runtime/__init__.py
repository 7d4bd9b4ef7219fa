"""The TensorFlow-free runtime: what reads an export with numpy, Pillow and onnxruntime.

Modules, one job each: ``contract`` (file and signature names, the
``metadata.json`` reader, p(w|y) and the style grid), ``images`` (the picture
codec: decode, EXIF orientation, limits, encode) and ``sessions`` (the
onnxruntime session factory). ``csvae export`` writes what ``contract``
names; ``serving.backends`` and the edge editor (``serving.edge``) read it.
None of them imports TensorFlow, Keras, TFP or ``keras_csvae``.
"""
