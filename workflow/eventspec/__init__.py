"""EventSpec: cross-modal speculative decoding from an event-camera VLM to a video VLM."""

__version__ = "0.1.0"
