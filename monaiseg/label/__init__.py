"""The MONAI Label app serving the bundles (main.py) with its tasks; import modules by full path."""

__all__: list[str] = []  # the app and its tasks are loaded by module path (monaiseg.label.main)
