"""The verifier stage."""
