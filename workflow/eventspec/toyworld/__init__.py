"""The toy world: synthetic road scenes in the DSEC layout, with an event simulator and ground truth."""
