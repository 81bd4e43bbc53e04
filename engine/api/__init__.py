"""The engine as a library: ``engine.Classifier``, ``engine.run``, ``engine.preprocess`` and
the options records the commands parse their flags into (docs/api.md)."""
