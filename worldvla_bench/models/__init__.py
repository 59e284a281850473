"""Models the project trains and evaluates itself (currently `worldvla`: the WorldVLA core)."""
