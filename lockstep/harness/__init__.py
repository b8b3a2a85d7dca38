"""The bridge between model and implementation, and the command line."""
