"""Case studies as one command each: ``jaxlem-study NAME [quick] [key=value ...]``.

A study is a Hydra config (``jaxlem/configs/study/NAME.yaml``) and a module of this package;
``run_study`` runs its cells (resuming a stopped study) and writes its report folder.
"""

from jaxlem.studies.runner import STUDIES, load_config, main, names, run_study

__all__ = ["STUDIES", "load_config", "main", "names", "run_study"]
