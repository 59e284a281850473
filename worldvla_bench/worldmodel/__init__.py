"""World-model track: episodes of frames and actions, models that predict frames, scoring."""
