"""The page `styleseg serve` serves (index.html)."""
