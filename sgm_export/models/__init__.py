"""Finding, checking and loading models: the embedded demo, Hub ids and local directories."""
