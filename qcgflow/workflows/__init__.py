"""YAML/JSON workflow files -> the graph API."""
