"""Where a toy sequence keeps what real DSEC sequences lack: its ground truth and per-frame object maps."""

from pathlib import Path

GROUND_TRUTH_PATH = Path("toy_ground_truth.json")
OBJECT_MAPS_DIR = Path("toy_objects/left")
