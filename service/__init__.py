"""The use cases (add, search, update, delete, keys) and the thin HTTP layer over them."""
