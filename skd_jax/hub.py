"""Whether the Hugging Face hub may be contacted: the package's one definition.

`offline()` is True when `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` holds a
true value, parsed as huggingface_hub itself parses its flags ("1", "true",
"yes", "on", any case). So a value that huggingface_hub reads as online ("0",
"", "2", ...) is online here too: the driver never refuses a download that the
hub client would make, and never attempts one it would refuse.
"""
from __future__ import annotations

import os

_TRUE = ("1", "true", "yes", "on")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
  """True when the environment forbids hub downloads (see the module docstring)."""
  return any(os.environ.get(name, "").strip().lower() in _TRUE for name in OFFLINE_VARIABLES)
