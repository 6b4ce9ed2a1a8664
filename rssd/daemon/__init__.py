"""Daemon layer: the asyncio main loop, signals, config (re)load, the fetch pool, shutdown."""
