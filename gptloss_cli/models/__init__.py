"""Which model: specs (bundled aliases, GGUF files, directories, hub ids) -> a loaded model and tokenizer."""
