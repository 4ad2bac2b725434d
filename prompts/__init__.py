"""Prompt text for ffaa, as data files (YAML and Jinja). Nothing here is code."""
