"""`explain`: the loss computation made visible: one prediction on the user's own numbers (`prediction`), or
every position of a text with a real model (`text`)."""

from .prediction import Explanation, parse_numbers, parse_target
from .text import ExplainPosition, TextExplanation, explain_text

__all__ = ["ExplainPosition", "Explanation", "TextExplanation", "explain_text", "parse_numbers", "parse_target"]
