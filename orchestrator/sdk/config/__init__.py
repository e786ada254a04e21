"""Configuration objects of the SDK, where ModelArts keeps them (``modelarts.config``)."""
