"""A seeded mutation fuzzer for vmsniff's decoders of outside bytes (``python -m fuzz``)."""
