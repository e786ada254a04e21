"""The embedded local backend: object store on disk, subprocess jobs, SQLite registry,
predictor processes on 127.0.0.1. See ``backend.LocalBackend``."""
