"""Stage 3: offline acceptance metrics of trained adapters on the held-out feature store."""
