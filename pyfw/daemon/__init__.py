"""`pyfw daemon`: the engine running on live traffic (NFQUEUE for now)."""
