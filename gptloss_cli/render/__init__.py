"""Results -> what a person or a program reads: tables, JSON, heatmaps, HTML. Returns renderables or
strings; nothing here prints."""
