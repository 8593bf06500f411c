"""Hydra configuration of ``jaxlem-train`` (a package so Hydra finds it when installed).

Importing it registers the ``jaxlem_run_dir`` resolver the config uses: the run folder is
``out_dir`` when given (so no stray ``outputs/`` folder appears), else a timestamped folder.
"""

from omegaconf import OmegaConf


def _run_dir(out_dir: object, default: str) -> str:
    return default if out_dir in (None, "", "None", "null") else str(out_dir)


OmegaConf.register_new_resolver("jaxlem_run_dir", _run_dir, replace=True)
