"""Data: readers of source layouts, class maps, geometry, and the prepared training store."""
