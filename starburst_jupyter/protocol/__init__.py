"""What kernel and workers agree on: object-store keys, the worker spec, exit meanings, serialization, programs."""
