"""The operator commands beside ``rssd run``: one module per command, plus shared helpers."""
