"""Task logs (SPEC section 6): records, the SQL store, transitions rebuilt from logs, data sets."""
