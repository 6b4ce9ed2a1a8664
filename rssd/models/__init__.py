"""Models layer: the config (dataclasses, checked with pydantic), frozen records (msgspec
Structs) and enums, and pure decisions over them. No I/O beyond finding and reading
config.toml and the files it names."""
