"""The toy pair: its word-level tokenizer and its trainer (rule ``toy_models``), kept apart from the real backends."""
