"""Talking to a running service: sessions, the Ray-style API, ``run``, resume and caching."""
