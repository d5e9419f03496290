"""The adapter stage's error: bad input (level, registry key, store, checkpoint), named in the message."""


class AdapterError(ValueError):
    """An adapter that cannot be built, trained or loaded; the message names the file or config key."""
