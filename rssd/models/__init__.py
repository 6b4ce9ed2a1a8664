"""Models layer: the config (pydantic), plain frozen dataclasses and enums, and pure
decisions over them. No I/O beyond finding and reading config.toml and the files it
names."""
