"""Hidden states on disk: storage dtypes and the conversions both store writers and readers use.

zarr has no bfloat16, so bfloat16 hidden states are stored as their uint16 bit
pattern with the store attribute ``logical_dtype`` saying what they are. This
module holds only those conversions, so a store reader never imports the code
that writes the store (or the model code behind it).
"""

from __future__ import annotations

import numpy as np
import torch

STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32, "bfloat16": np.uint16}


def to_storage(hidden: torch.Tensor, dtype: str) -> np.ndarray:
    """float32 tensor -> stored numpy array (bfloat16 as its uint16 bit pattern)."""
    if dtype == "bfloat16":
        return hidden.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return hidden.numpy().astype(STORAGE_DTYPES[dtype])


def stored_tensor(values: np.ndarray, logical_dtype: str) -> torch.Tensor:
    """Stored array -> tensor in its logical dtype, without copying (bfloat16 from its uint16 bits)."""
    if logical_dtype == "bfloat16":
        return torch.from_numpy(values.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(values)


def from_storage(values: np.ndarray, logical_dtype: str) -> torch.Tensor:
    """Stored array -> float32 tensor."""
    return stored_tensor(values, logical_dtype).float()
