"""The retriever stage."""
