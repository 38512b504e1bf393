"""Example applications of trio-redisha (run them with ``python -m examples.NAME``)."""
