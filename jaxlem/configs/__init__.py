"""Hydra configuration of ``jaxlem-train`` (a package so Hydra finds it when installed)."""
