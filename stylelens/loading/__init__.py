"""Reading and writing network snapshots without ever running code stored in them."""
