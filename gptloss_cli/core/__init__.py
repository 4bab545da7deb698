"""The numerical core, pure torch and numpy: windows, batches, the engine loop, LM-head losses, totals."""
