"""Training and evaluation of patent embedding models on mined datasets."""
