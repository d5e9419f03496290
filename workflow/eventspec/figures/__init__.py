"""Figures drawn from the small JSON files the stages write (restyling one never reruns a stage)."""
