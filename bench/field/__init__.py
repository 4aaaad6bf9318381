"""Weak-link field scenarios (``python -m bench.field``): see ``__main__`` for what they measure."""
