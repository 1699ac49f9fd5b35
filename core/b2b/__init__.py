"""B2B Connect: connections between accounts, on one instance and across two."""
