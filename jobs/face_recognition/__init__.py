"""Face recognition training job (insightface-style) and verification."""
