"""`compare`: two models on the same documents. `run` scores them (one pass through both heads when they share
a tokenizer, word by word when they do not), `result` holds what it gives, `stats` the paired statistics."""

from .result import CompareResult, DocumentPair, FailedCandidate
from .run import compare_documents

__all__ = ["CompareResult", "DocumentPair", "FailedCandidate", "compare_documents"]
