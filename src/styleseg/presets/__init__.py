"""Training presets shipped as YAML; `styleseg train --preset NAME`."""
