"""`make bench`: what the Miroir proxy costs on top of its nodes, and how it scales."""
