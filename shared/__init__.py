"""icdcoder's common library: message schemas, stream names, settings, logging, catalogue."""
