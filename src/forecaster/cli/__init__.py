"""Command-line interface: `forecaster <command>`."""
