"""Neural CV models and their TorchScript export."""
