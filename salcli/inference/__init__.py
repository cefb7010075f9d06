"""Running a model over a video: the Predictor (predictor), clips and the key-frame
schedule (clips), the engine (device, precision, batching), overlap reuse, and what the
machine can do (hardware)."""
