"""Models layer: pydantic DTOs, enums and the config models. No I/O beyond reading config."""
