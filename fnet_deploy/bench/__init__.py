"""Speed measurement: the model's cost, the machine's peaks, timing of runners."""
