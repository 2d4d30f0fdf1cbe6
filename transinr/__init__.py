"""transinr: Transformers as meta-learners for implicit neural representations."""

__version__ = "0.1.0"
