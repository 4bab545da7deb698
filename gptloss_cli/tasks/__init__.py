"""The library's entry points: score, tokens, compare, explain and run files, each returning typed results."""
