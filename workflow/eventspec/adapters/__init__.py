"""Stage 2: the adapter family (L1-L5, L5F, B1), built from a config registry and trained from the feature store."""

from .architectures import DECODE_LEVELS, LEVELS, PREFILL_LEVELS, build_adapter, count_parameters
from .checkpoint import load_adapter
from .errors import AdapterError

__all__ = ["AdapterError", "DECODE_LEVELS", "LEVELS", "PREFILL_LEVELS", "build_adapter", "count_parameters",
           "load_adapter"]
