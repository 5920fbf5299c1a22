"""Task logs (paper VI-A, the Data Layer): records, the SQL store, transitions rebuilt from
logs, data sets."""
