"""Stage 4: lossless speculative decoding (engine, drafter worker, peers) and its end-to-end benchmark."""
