"""Environments: the shared contract, lem-v0, wrappers and the registry."""
