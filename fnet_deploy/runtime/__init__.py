"""Real-time fusion: backends, sources, synchronisation, registration, pipeline, sinks."""
