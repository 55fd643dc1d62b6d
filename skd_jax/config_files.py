"""Loading config files that live beside each other (configs/*.py are not a package)."""
import importlib.util
import os
import sys


def sibling(config_file: str, name: str):
  """The module `name`.py from the directory of `config_file` (e.g. configs/base.py)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  module_name = f"skd_configs_{name}"
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module
  spec.loader.exec_module(module)
  return module
