"""Data: batching, one-hot encoding and dataset loaders."""
