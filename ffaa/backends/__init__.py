"""Model backends: one protocol, transformers LLaVA as the real runtime, a tiny model for tests."""
