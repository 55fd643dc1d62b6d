"""The tasks, one file each: its data source and its `@register_task` factory.

    from skd_jax.data import tasks
    task = tasks.get_task("gsm8k", train_size=1000)

Paper tasks (need their raw files locally or the hub): "translation"
(Flores-200, Assamese->English by default), "summarization" (DialogSum),
"gsm8k", "math" (UltraInteract math CoT; MATH-500 / GSMplus / ASDiv / SVAMP
test sets) and "math_eval". Offline tasks shipped with the package:
"numbers_en_fr", "numbers_en_de", "arithmetic", "aclsum".

Every module of this package is imported here, so a new task is one new file
(docs/EXTENDING.md); the `Task` type and the registry are in
`skd_jax.data.task`.
"""

import importlib
import pkgutil

from skd_jax.data.task import (SPLITS, Task, get_task, list_tasks, make_task,
                               offline_generators, register_task)


def _import_task_modules() -> None:
  """Imports every module of this package (each registers its tasks), in name order."""
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{info.name}")


_import_task_modules()

from skd_jax.data.tasks.math import MATH_INSTRUCTION  # noqa: E402  (after the loading)

__all__ = ["SPLITS", "Task", "get_task", "list_tasks", "make_task", "offline_generators",
           "register_task", "MATH_INSTRUCTION"]
