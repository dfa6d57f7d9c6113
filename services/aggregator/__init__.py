"""The aggregator stage."""
