"""SellerVault: a vault and security control plane for marketplace buyer data."""

__version__ = "0.1.0"
