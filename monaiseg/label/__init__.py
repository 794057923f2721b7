"""The MONAI Label app serving the bundles (main.py) with its tasks; import modules by full path."""
