"""Policies (one interface): the VLA-R1 model and the scripted simulator expert."""
