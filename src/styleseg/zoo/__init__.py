"""Shipped models: registry.json, weights and model cards (see styleseg.models.zoo)."""
