"""icdcoder: ICD-10-CM codes for clinical notes, each with its evidence span and justification."""

__version__ = "0.1.0"
