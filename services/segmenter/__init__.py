"""The segmenter stage."""
