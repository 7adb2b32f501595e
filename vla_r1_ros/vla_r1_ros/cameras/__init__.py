"""Camera sources (one interface): RealSense, the simulator, recordings."""
